"""Pending approvals in Redis, through two clients as two replicas hold them, on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as redis_asyncio

from kartra_mcp.errors import ConfirmationInvalid, StateUnavailable
from kartra_mcp.state.redis_approvals import RedisApprovalStore
from kartra_mcp.state.redis_store import RedisState, redis_client
from kartra_mcp.tools.approval import Approvals, wait_for_answer
from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.call import Accepted, ConfirmationRequest
from kartra_mcp.tools.preview import Preview
from kartra_mcp.tools.spec import Risk
from tests.pending_bound import LIMIT, Clock, check_approvals_bound
from tests.services import RedisServer

pytestmark = pytest.mark.hosted


def _request() -> ConfirmationRequest:
    preview = Preview("Refund 67.00 USD to Ann <ann@example.com>", ["Product: Masterclass"], "Cannot be undone.")
    return ConfirmationRequest("refund-transaction", Risk.CRITICAL, preview, "id", 2e9, {"transaction_id": "7"}, "c1")


@pytest.fixture
async def two(redis: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Approvals, Approvals]]:
    """Two replicas' approvals over one Redis, each with its own client and audit log."""
    a, b = redis_client(redis.url), redis_client(redis.url)

    def approvals(name: str, client: redis_asyncio.Redis) -> Approvals:
        store = RedisApprovalStore(RedisState(client, "test:tenant:t1:"))
        return Approvals(AuditLog(tmp_path / f"{name}.sqlite3"), approver_token="approver", store=store)

    try:
        yield approvals("a", a), approvals("b", b)
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_approval_opened_on_one_replica_is_listed_signed_and_answered_once_on_both(
    two: tuple[Approvals, Approvals],
) -> None:
    a, b = two
    approval, secret = await a.open(_request(), "inbox", on_answer="run")
    listed = await b.store.pending()
    outcomes: list[str] = []

    async def answer(on: Approvals) -> None:
        try:
            outcomes.append((await on.answer(approval.id, approve=True, via="inbox", by="p", approver=True)).state)
        except ConfirmationInvalid as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tasks:
        for on in (a, b) * 4:
            tasks.start_soon(answer, on)
    assert [(x.id, x.tool, x.arguments, x.risk) for x in listed] == [
        (approval.id, "refund-transaction", {"transaction_id": "7"}, Risk.CRITICAL)
    ]
    seen = await b.store.get(approval.id)
    assert seen is not None and seen.matches(secret) and seen.state == "approved"
    assert outcomes.count("approved") == 1, outcomes
    assert all("already" in o for o in outcomes if o != "approved")
    assert await a.store.pending() == []
    # One key for both: a sign-in or a page's form from one replica holds on the other.
    assert await a.approver_cookie() == await b.approver_cookie()
    assert await a.csrf(approval.id) == await b.csrf(approval.id)


async def test_a_call_waiting_on_one_replica_hears_the_answer_given_on_the_other(
    two: tuple[Approvals, Approvals],
) -> None:
    a, b = two
    approval, secret = await a.open(_request(), "browser", on_answer="wait")
    async with anyio.create_task_group() as tasks:
        answers: list[object] = []

        async def wait() -> None:
            answers.append(await wait_for_answer(a, approval, timeout=30, via="browser"))

        tasks.start_soon(wait)
        await b.answer(approval.id, approve=True, via="browser", by="person", secret=secret)
    assert answers == [Accepted("browser", by="person")]


async def test_with_redis_down_no_approval_is_opened_or_answered(
    two: tuple[Approvals, Approvals], redis: RedisServer
) -> None:
    a, b = two
    approval, _ = await a.open(_request(), "inbox", on_answer="run")
    redis.kill()
    with pytest.raises(StateUnavailable, match="Redis"):
        await a.open(_request(), "inbox", on_answer="run")
    with pytest.raises(StateUnavailable, match="nothing was sent"):
        await b.answer(approval.id, approve=True, via="inbox", by="p", approver=True)


async def test_the_bound_on_pending_approvals_holds_in_redis_as_in_process(redis: RedisServer, tmp_path: Path) -> None:
    clock, client = Clock(), redis_client(redis.url)
    try:
        store = RedisApprovalStore(RedisState(client, "test:tenant:t1:"), clock=clock)
        approvals = Approvals(AuditLog(tmp_path / "a.sqlite3"), ttl=300, store=store, clock=clock, limit=LIMIT)
        await check_approvals_bound(approvals, clock)
    finally:
        await client.aclose()
