"""Redis-backed shared state, driven through two clients as two replicas would hold them, on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.errors import ConfirmationInvalid, StateUnavailable
from kartra_mcp.state import shared_state
from kartra_mcp.state.redis_store import RedisCriticalCap, RedisPendingStore, RedisState, redis_client
from kartra_mcp.tools.confirm import ConfirmationBook
from tests.pending_bound import LIMIT, Clock, check_book_bound
from tests.services import RedisServer

pytestmark = pytest.mark.hosted


@pytest.fixture
async def replicas(redis: RedisServer) -> AsyncIterator[tuple[RedisState, RedisState]]:
    """Two separate clients of one Redis: what two replicas hold."""
    a, b = redis_client(redis.url), redis_client(redis.url)
    try:
        yield RedisState(a, "test:"), RedisState(b, "test:")
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_id_issued_by_one_replica_is_spent_once_when_raced_on_both(
    replicas: tuple[RedisState, RedisState],
) -> None:
    book_a, book_b = (ConfirmationBook(ttl=300, store=RedisPendingStore(state)) for state in replicas)
    confirmation, _ = await book_a.issue("refund-transaction", {"transaction_id": "7"}, "conn")
    outcomes: list[str] = []

    async def redeem(book: ConfirmationBook) -> None:
        try:
            call = await book.redeem(confirmation, "conn")
            outcomes.append(call.tool)
        except ConfirmationInvalid as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tasks:
        for book in (book_a, book_b) * 4:
            tasks.start_soon(redeem, book)
    assert outcomes.count("refund-transaction") == 1
    assert all("already used" in o for o in outcomes if o != "refund-transaction")


async def test_an_id_from_another_replica_redeems_its_exact_call_and_a_forged_one_nothing(
    replicas: tuple[RedisState, RedisState],
) -> None:
    book_a, book_b = (ConfirmationBook(ttl=300, store=RedisPendingStore(state)) for state in replicas)
    confirmation, _ = await book_a.issue("t", {"a": 1, "b": [1, 2]}, "conn", channel="elicitation")
    nonce = confirmation.partition(".")[0]
    with pytest.raises(ConfirmationInvalid, match="not valid"):
        await book_b.redeem_for(nonce + "." + "0" * 32, "t", {"a": 1, "b": [1, 2]}, "conn")
    with pytest.raises(ConfirmationInvalid, match="different call"):
        await book_b.redeem_for(confirmation, "t", {"a": 2, "b": [1, 2]}, "conn")
    await book_b.redeem_for(confirmation, "t", {"b": [1, 2], "a": 1}, "conn")
    with pytest.raises(ConfirmationInvalid, match="already used"):
        await book_a.redeem_for(confirmation, "t", {"a": 1, "b": [1, 2]}, "conn")


async def test_the_hourly_cap_admits_exactly_its_number_across_replicas_and_takes_back_what_was_not_sent(
    replicas: tuple[RedisState, RedisState],
) -> None:
    caps = [RedisCriticalCap(state) for state in replicas]
    admitted: list[int | None] = []

    async def reserve(cap: RedisCriticalCap) -> None:
        async with cap.reserve("conn", 3) as done:
            admitted.append(done)

    async with anyio.create_task_group() as tasks:
        for cap in caps * 4:
            tasks.start_soon(reserve, cap)
    assert admitted.count(None) == 3
    assert [d for d in admitted if d is not None] == [3] * 5
    assert await caps[1].used("conn") == 3
    assert await caps[1].used("other") == 0

    async def not_recorded() -> None:
        async with RedisCriticalCap(replicas[0]).reserve("fresh", 1) as done:
            assert done is None
            raise RuntimeError("the intent row could not be written")

    with pytest.raises(RuntimeError):
        await not_recorded()
    assert await caps[0].used("fresh") == 0


async def test_a_redis_that_is_gone_refuses_with_what_to_do(redis: RedisServer) -> None:
    client = redis_client(redis.url)
    try:
        book = ConfirmationBook(ttl=300, store=RedisPendingStore(RedisState(client, "test:")))
        confirmation, _ = await book.issue("t", {}, "conn")
        redis.kill()
        with pytest.raises(StateUnavailable, match=r"Redis.*nothing was sent.*KARTRA_MCP_REDIS_URL"):
            await book.redeem(confirmation, "conn")
        with pytest.raises(StateUnavailable):
            await book.issue("t", {}, "conn")

        async def reserve() -> None:
            async with RedisCriticalCap(RedisState(client, "test:")).reserve("conn", 3):
                pytest.fail("a place was given without Redis")

        with pytest.raises(StateUnavailable):
            await reserve()
    finally:
        await client.aclose()


async def test_each_tenant_keeps_its_ids_refund_holds_and_cap_apart_on_every_replica(
    redis: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(redis_url=SecretStr(redis.url), audit_db=tmp_path / "audit.sqlite3")
    async with shared_state(settings, sandbox=False) as one, shared_state(settings, sandbox=False) as other:
        on_one, on_other = one.state_for(300), other.state_for(300)
        assert on_one is not None and on_other is not None
        alice, bob, alice_elsewhere = on_one("alice"), on_one("bob"), on_other("alice")

        confirmation, _ = await alice.book.issue("t", {}, "conn")
        with pytest.raises(ConfirmationInvalid, match="Unknown confirmation id"):
            await bob.book.redeem(confirmation, "conn")
        assert (await alice_elsewhere.book.redeem(confirmation, "conn")).tool == "t"

        assert alice.critical_cap is not None and bob.critical_cap is not None
        assert alice_elsewhere.critical_cap is not None
        async with alice.critical_cap.reserve("conn", 1) as done:
            assert done is None
        async with bob.critical_cap.reserve("conn", 1) as done:
            assert done is None
        async with alice_elsewhere.critical_cap.reserve("conn", 1) as done:
            assert done == 1

        assert await alice.refunds.hold("conn", "7", 30.0, seen=0.0, limit=50.0) is not None
        assert await bob.refunds.hold("conn", "7", 30.0, seen=0.0, limit=50.0) is not None
        assert await alice_elsewhere.refunds.hold("conn", "7", 30.0, seen=0.0, limit=50.0) is None


async def test_the_bound_on_pending_ids_holds_in_redis_as_in_process(replicas: tuple[RedisState, RedisState]) -> None:
    clock = Clock()
    book = ConfirmationBook(ttl=300, clock=clock, store=RedisPendingStore(replicas[0], clock=clock), limit=LIMIT)
    await check_book_bound(book, clock)
