"""Two real kartra-mcp HTTP replicas on one standalone sandbox, sharing a real Redis and a real PostgreSQL.

What must hold across replicas: a confirmation id is spent once however it is raced, the hourly
cap of critical calls holds for both together, both write their audit rows to PostgreSQL (which
`kartra-mcp audit` reads), and a Redis that dies refuses what needs it while reads go on.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from kartra_mcp.state.postgres_audit import PostgresAuditLog
from tests.processes import Server, StandaloneSandbox, free_port, local_env, run, standalone_sandbox, wait_until
from tests.server.conftest import text_of
from tests.services import RedisServer, haproxy_entry, redis_server

pytestmark = pytest.mark.hosted

ROOT = Path(__file__).resolve().parents[2]

HTTP_TOKEN = "a-long-random-http-token-for-the-replicas"
POLICY = """
# These clients cannot ask a person, so confirmations come back as ids (the test plays the person).
on_unconfirmable = "token"

[classes]
critical = "allow"

[actions]
"assign-tag" = "confirm"

[limits]
max_critical_calls_per_hour = 3
"""


@dataclass(frozen=True)
class Replicas:
    urls: tuple[str, str]
    sandbox: StandaloneSandbox
    env: dict[str, str]

    def runs(self) -> int:
        """Action runs the sandbox has answered so far."""
        count: int = self.sandbox.state()["counts"]["action_runs"]
        return count


def _env(
    tmp_path: Path, membrane: dict[str, str], redis_url: str, audit_dsn: str, name: str, **extra: str
) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return local_env(
        None,
        **membrane,
        **extra,
        KARTRA_MCP_REDIS_URL=redis_url,
        KARTRA_MCP_AUDIT_DSN=audit_dsn,
        KARTRA_MCP_POLICY=str(policy),
        KARTRA_MCP_AUDIT_DB=str(tmp_path / name / "unused.sqlite3"),
        KARTRA_MCP_CACHE_DIR=str(tmp_path / name / "cache"),
        KARTRA_MCP_LOG_LEVEL="WARNING",
    )


@contextmanager
def two_servers(tmp_path: Path, env: Callable[[str], dict[str, str]], *args: str) -> Iterator[tuple[str, str]]:
    """Two `kartra-mcp serve --transport http` processes, each with `env(its name)`; their URLs."""
    with ExitStack() as stack:
        servers, urls = [], []
        for name in ("a", "b"):
            port = free_port()
            server = Server(
                [sys.executable, "-m", "kartra_mcp", "serve", "--transport", "http", "--port", str(port), *args],
                env=env(name),
                logs=tmp_path / name,
            )
            stack.callback(server.stop)
            servers.append(server)
            urls.append(f"http://127.0.0.1:{port}")
        for server, url in zip(servers, urls, strict=True):
            server.wait_http(f"{url}/healthz")
        yield urls[0], urls[1]


@contextmanager
def replicas(tmp_path: Path, redis_url: str, audit_dsn: str, **extra: str) -> Iterator[Replicas]:
    """A standalone sandbox and two replicas in front of it, clients authenticated by one HTTP token."""
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        membrane = {
            "MEMBRANE_API_URL": sandbox.url,
            "MEMBRANE_TOKEN": sandbox.token,
            "KARTRA_MCP_HTTP_TOKEN": HTTP_TOKEN,
        }

        def env(name: str) -> dict[str, str]:
            return _env(tmp_path, membrane, redis_url, audit_dsn, name, **extra)

        with two_servers(tmp_path, env) as urls:
            yield Replicas(urls, sandbox, env("cli"))


@asynccontextmanager
async def client(url: str, mode: str, token: str = HTTP_TOKEN) -> AsyncIterator[Client]:
    """A client that cannot ask a person in its own window, so confirmations come back as ids."""
    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60), trust_env=False
        ) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as connected,
    ):
        yield connected


def _confirmation_id(result: CallToolResult) -> str:
    assert result.structured_content is not None, text_of(result)
    found: str = result.structured_content["confirmation_id"]
    return found


def _rows_in(audit_dsn: str) -> list[dict[str, Any]]:
    """The rows in PostgreSQL, newest first, read directly (`kartra-mcp audit` reads the same, see above)."""
    return [row.as_dict() for row in PostgresAuditLog(audit_dsn).rows(limit=500)]


def _audit_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    """What `kartra-mcp audit --json` reads from PostgreSQL."""
    done = run([sys.executable, "-m", "kartra_mcp", "audit", "--json", "--limit", "500"], env=env, timeout=60)
    assert done.returncode == 0, done.explain()
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


async def test_two_replicas_spend_an_id_once_hold_the_cap_together_and_log_to_postgres(
    tmp_path: Path, redis: RedisServer, audit_dsn: str
) -> None:
    with replicas(tmp_path, redis.url, audit_dsn) as two, anyio.fail_after(120):
        samples = two.sandbox.state()["samples"]
        email = samples["lead_with_transactions"]["email"]
        for mode, tag in (("legacy", "VIP"), ("auto", "Customer")):
            async with client(two.urls[0], mode) as a, client(two.urls[1], mode) as b:
                asked = await a.call_tool("assign-tag", {"email": email, "tag_name": tag})
                confirmation = _confirmation_id(asked)
                before = two.runs()
                answers: list[CallToolResult] = []

                async def confirm(
                    on: Client, confirmation: str = confirmation, answers: list[CallToolResult] = answers
                ) -> None:
                    answers.append(await on.call_tool("confirm-action", {"confirmation_id": confirmation}))

                async with anyio.create_task_group() as tasks:
                    for on in (a, b, a, b):
                        tasks.start_soon(confirm, on)
                assert [r.is_error for r in answers].count(False) == 1, [text_of(r) for r in answers]
                assert all("already used" in text_of(r) for r in answers if r.is_error)
                assert two.runs() == before + 1  # sent once

        # The cap: three critical calls an hour, six tried at once through both replicas.
        transactions = two.sandbox.state()["counts"]["transactions"]
        refund = {"transaction_id": samples["refundable_transaction"]["transaction_id"], "refund_amount": 1}
        async with client(two.urls[0], "auto") as a, client(two.urls[1], "auto") as b:
            results: list[CallToolResult] = []

            async def refund_once(on: Client) -> None:
                results.append(await on.call_tool("refund-transaction", refund))

            async with anyio.create_task_group() as tasks:
                for on in (a, b) * 3:
                    tasks.start_soon(refund_once, on)
        assert [r.is_error for r in results].count(False) == 3, [text_of(r) for r in results]
        assert all("per hour" in text_of(r) for r in results if r.is_error)
        assert two.sandbox.state()["counts"]["transactions"] == transactions + 3

        # Behind the entry point of compose.yaml: a 2025-11-25 session keeps reaching the replica that
        # holds it (round robin alone would send every other request to the other one), 2026-07-28 goes anywhere.
        backends = {"replica-a": two.urls[0].removeprefix("http://"), "replica-b": two.urls[1].removeprefix("http://")}
        with haproxy_entry(ROOT / "deploy" / "haproxy.cfg", backends, tmp_path / "entry") as entry:
            for mode in ("legacy", "auto"):
                async with client(entry, mode) as through:
                    for _ in range(4):
                        listed = await through.call_tool("retrieve-account-tags", {})
                        assert not listed.is_error, text_of(listed)
        rows = _audit_rows(two.env)
    assert not list(tmp_path.glob("*/unused.sqlite3"))  # nothing went to a local file
    tags = [r for r in rows if r["tool"] == "assign-tag"]
    assert sorted(r["outcome"] for r in tags) == ["awaiting_confirmation"] * 2 + ["success"] * 2
    refunds = [r for r in rows if r["tool"] == "refund-transaction"]
    assert sorted(r["outcome"] for r in refunds) == ["refused"] * 3 + ["success"] * 3
    assert not [r for r in rows if r["outcome"] == "unknown"]


async def test_killing_redis_mid_run_refuses_writes_keeps_reads_and_sends_nothing_twice(
    tmp_path: Path, redis: RedisServer, audit_dsn: str
) -> None:
    with replicas(tmp_path, redis.url, audit_dsn) as two, anyio.fail_after(120):
        email = two.sandbox.state()["samples"]["lead_with_transactions"]["email"]
        async with client(two.urls[0], "legacy") as a, client(two.urls[1], "auto") as b:
            pending = _confirmation_id(await a.call_tool("assign-tag", {"email": email, "tag_name": "VIP"}))
            redis.kill()
            before = two.runs()
            read = await b.call_tool("get-lead", {"email": email})
            assert not read.is_error, text_of(read)
            spent = await b.call_tool("confirm-action", {"confirmation_id": pending})
            new = await a.call_tool("assign-tag", {"email": email, "tag_name": "Customer"})
            critical = await b.call_tool("refund-transaction", {"transaction_id": "1", "refund_amount": 1})
            for refused in (spent, new, critical):
                assert refused.is_error
                assert "Redis" in text_of(refused) and "nothing was sent" in text_of(refused), text_of(refused)
            assert two.runs() == before + 1  # the read alone

            # Redis comes back (empty): the old id is gone for good, new ones work on both replicas.
            with redis_server(tmp_path / "redis-again", port=redis.port):
                again = await b.call_tool("confirm-action", {"confirmation_id": pending})
                assert again.is_error and "Unknown confirmation id" in text_of(again)
                fresh = _confirmation_id(await a.call_tool("assign-tag", {"email": email, "tag_name": "VIP"}))
                done = await b.call_tool("confirm-action", {"confirmation_id": fresh})
                assert not done.is_error, text_of(done)
            assert two.runs() == before + 2
        rows = _rows_in(audit_dsn)
    # Newest first: each refusal while Redis was gone has its row, and nothing is left `unknown`.
    outcomes = [(r["tool"], r["outcome"]) for r in rows]
    assert outcomes == [
        ("assign-tag", "success"),
        ("assign-tag", "awaiting_confirmation"),
        ("confirm-action", "refused"),  # the id Redis forgot
        ("refund-transaction", "refused"),
        ("assign-tag", "refused"),
        ("confirm-action", "refused"),
        ("assign-tag", "awaiting_confirmation"),
    ]
    assert ["Redis" in r["error"] for r in rows if r["outcome"] == "refused"] == [False, True, True, True]


async def test_hosted_replicas_keep_each_persons_ids_apart_spend_them_once_and_stamp_their_rows(
    tmp_path: Path, redis: RedisServer, audit_dsn: str
) -> None:
    port = free_port()
    membrane = f"http://127.0.0.1:{port}"
    team = Server(
        [sys.executable, "-m", "kartra_mcp", "sandbox", "--tenants", "alice,bob", "--port", str(port), "--leads", "20"],
        env=local_env(PYTHONUNBUFFERED="1"),
        logs=tmp_path / "team",
    )

    def printed() -> dict[str, str]:
        lines = team.output().splitlines()
        return dict(line.removeprefix("token for ").split(": ", 1) for line in lines if line.startswith("token for "))

    def env(name: str) -> dict[str, str]:
        return _env(tmp_path, {"MEMBRANE_API_URL": membrane}, redis.url, audit_dsn, name)

    try:
        wait_until(lambda: team.alive() and len(printed()) == 2, timeout=60, what=team.explain())
        tokens = printed()
        with two_servers(tmp_path, env, "--auth", "membrane") as (a, b), anyio.fail_after(120):
            async with client(a, "auto", tokens["alice"]) as alice:
                lead = await alice.call_tool("retrieve-account-tags", {})
                assert not lead.is_error, text_of(lead)
                asked = await alice.call_tool("assign-tag", {"email": "nobody@example.com", "tag_name": "VIP"})
                confirmation = _confirmation_id(asked)
            async with client(b, "auto", tokens["bob"]) as bob:
                stolen = await bob.call_tool("confirm-action", {"confirmation_id": confirmation})
            assert stolen.is_error and "Unknown confirmation id" in text_of(stolen)
            answers: list[CallToolResult] = []
            async with client(a, "legacy", tokens["alice"]) as on_a, client(b, "auto", tokens["alice"]) as on_b:

                async def confirm(on: Client) -> None:
                    answers.append(await on.call_tool("confirm-action", {"confirmation_id": confirmation}))

                async with anyio.create_task_group() as tasks:
                    for on in (on_a, on_b, on_a, on_b):
                        tasks.start_soon(confirm, on)
            # Run once (Kartra's own answer about the unknown lead is this tenant's, not an id refusal).
            assert sum("already used" not in text_of(r) for r in answers) == 1, [text_of(r) for r in answers]
            rows = _rows_in(audit_dsn)
    finally:
        team.stop()
    tenants = {r["tenant"] for r in rows}
    assert len(tenants) == 2 and None not in tenants  # alice's and bob's rows, each stamped
    (bobs,) = {r["tenant"] for r in rows if r["tool"] == "confirm-action" and "Unknown" in (r["error"] or "")}
    assert {r["tenant"] for r in rows if r["tool"] == "assign-tag"} == tenants - {bobs}


APPROVER = "approver-token-held-by-a-person-0123456789"


async def _sign_in(http: httpx2.AsyncClient, url: str) -> None:
    """The approver signs in on one replica's page; the cookie is what the browser keeps."""
    signed = await http.post(
        f"{url}/approvals/login", data={"token": APPROVER, "next": "/approvals"}, headers={"Origin": url}
    )
    assert signed.status_code == 303, signed.text


async def _form(http: httpx2.AsyncClient, url: str, approval_id: str) -> dict[str, str]:
    page = await http.get(f"{url}/approvals/{approval_id}")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None, page.text
    return {"csrf": found.group(1), "answer": "approve"}


async def test_an_approval_opened_on_one_replica_is_answered_on_the_other_and_runs_once(
    tmp_path: Path, redis: RedisServer, audit_dsn: str
) -> None:
    extra = {"KARTRA_MCP_APPROVER_TOKEN": APPROVER}
    with replicas(tmp_path, redis.url, audit_dsn, **extra) as two, anyio.fail_after(120):
        url_a, url_b = two.urls
        email = two.sandbox.state()["samples"]["lead_with_transactions"]["email"]
        async with (
            client(url_a, "legacy") as a,
            client(url_b, "auto") as b,
            httpx2.AsyncClient(trust_env=False, timeout=30) as person,
        ):
            # Opened on A, listed and approved in B's inbox; the model checks on B.
            pending = await a.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
            assert pending.structured_content is not None, text_of(pending)
            first = pending.structured_content["approval_id"]
            before = two.runs()
            await _sign_in(person, url_b)
            inbox = await person.get(f"{url_b}/approvals")
            approved = await person.post(
                f"{url_b}/approvals/{first}", data=await _form(person, url_b, first), headers={"Origin": url_b}
            )
            checked = await b.call_tool("check-approval", {"approval_id": first})
            assert two.runs() == before + 1

            # The same form posted on A and on B at once: one answer runs the call, the other is refused.
            second = (await b.call_tool("assign-tag", {"email": email, "tag_name": "Customer"})).structured_content
            assert second is not None
            form = await _form(person, url_a, second["approval_id"])  # B's sign-in holds on A too
            raced: list[httpx2.Response] = []

            async def post(url: str) -> None:
                target = f"{url}/approvals/{second['approval_id']}"
                raced.append(await person.post(target, data=form, headers={"Origin": url}))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post, url_a)
                tasks.start_soon(post, url_b)
            assert two.runs() == before + 2
            after = await a.call_tool("check-approval", {"approval_id": second["approval_id"]})

            # Without Redis no approval is opened: the call is refused and nothing is sent.
            redis.kill()
            refused = await a.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
            assert two.runs() == before + 2
    assert first in inbox.text and "assign-tag" in inbox.text
    assert approved.status_code == 200 and 'id="outcome">Approved' in approved.text, approved.text
    assert checked.structured_content is not None
    assert (checked.structured_content["state"], checked.structured_content["outcome_is_error"]) == ("approved", False)
    assert sorted(r.status_code for r in raced) == [200, 403], [r.text for r in raced]
    assert "answered once" in next(r.text for r in raced if r.status_code == 403)
    assert after.structured_content is not None and after.structured_content["state"] == "approved"
    assert refused.is_error and "Redis" in text_of(refused) and "nothing was sent" in text_of(refused), text_of(refused)
