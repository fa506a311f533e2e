"""The audit log in a real PostgreSQL: the same rows and rules as the SQLite log, and fail-closed when it is gone."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from kartra_mcp.errors import AuditUnavailable
from kartra_mcp.state.postgres_audit import PostgresAuditLog
from kartra_mcp.tools.audit import REDACTED, Outcome
from tests.services import PostgresServer

pytestmark = pytest.mark.hosted


async def test_an_intent_is_committed_before_its_outcome_and_completed_after(audit_dsn: str) -> None:
    log = PostgresAuditLog(audit_dsn)
    await log.start()
    row = await log.intent(
        tool="refund-transaction",
        action="refund-transaction",
        arguments={"transaction_id": "7", "api_key": "secret"},
        risk="critical",
        decision="confirm",
        confirmation="token",
        connection="c",
    )
    # Another connection (another replica, or `kartra-mcp audit`) sees it at once.
    (seen,) = PostgresAuditLog(audit_dsn).rows()
    assert (seen.id, seen.outcome, seen.arguments) == (row, "unknown", {"transaction_id": "7", "api_key": REDACTED})
    assert await log.finish(row, "success", upstream_status=200) is None
    (done,) = log.rows()
    assert (done.outcome, done.upstream_status) == ("success", 200)
    assert done.duration_ms is not None and done.duration_ms >= 0
    await log.aclose()


async def test_rows_are_filtered_and_counted_as_the_cap_counts_them(audit_dsn: str) -> None:
    now = [1000.0]
    log = PostgresAuditLog(audit_dsn, clock=lambda: now[0])
    rows: list[tuple[str, Outcome, str, str]] = [
        ("a", "success", "critical", "c"),
        ("b", "refused", "critical", "c"),
        ("a", "failed", "write", "c"),
        ("a", "unknown", "critical", "d"),
    ]
    for tool, outcome, risk, connection in rows:
        await log.intent(
            tool=tool,
            action=None,
            arguments={},
            risk=risk,
            decision="allow",
            confirmation=None,
            connection=connection,
            outcome=outcome,
        )
        now[0] += 100
    assert [r.tool for r in log.rows(tool="a")] == ["a", "a", "a"]
    assert [r.outcome for r in log.rows(outcome="refused")] == ["refused"]
    assert [r.tool for r in log.rows(since=1150)] == ["a", "a"]
    assert await log.count_since(0, risk="critical") == 2  # refusals do not count as calls made
    assert await log.count_since(0, risk="critical", connection="c") == 1
    # The sandbox's play keeps a table of its own.
    assert PostgresAuditLog(audit_dsn, table="sandbox_calls").rows() == []
    await log.aclose()


async def test_two_logs_writing_at_once_lose_no_row(audit_dsn: str) -> None:
    logs = [PostgresAuditLog(audit_dsn), PostgresAuditLog(audit_dsn)]

    async def write(log: PostgresAuditLog, n: int) -> None:
        row = await log.intent(
            tool=f"t{n}", action=None, arguments={}, risk="write", decision="allow", confirmation=None, connection="c"
        )
        await log.finish(row, "success")

    async with anyio.create_task_group() as tasks:
        for n in range(20):
            tasks.start_soon(write, logs[n % 2], n)
    assert sorted(r.tool for r in logs[0].rows() if r.outcome == "success") == sorted(f"t{n}" for n in range(20))
    for log in logs:
        await log.aclose()


async def test_an_unreachable_database_refuses_the_intent_and_the_start_goes_on(postgres: PostgresServer) -> None:
    log = PostgresAuditLog(postgres.dsn("no_such_database"))
    await log.start()  # logged, not raised: reads keep working without it
    with pytest.raises(AuditUnavailable, match=r"nothing was sent.*KARTRA_MCP_AUDIT_DSN"):
        await log.intent(
            tool="t", action=None, arguments={}, risk="write", decision="allow", confirmation=None, connection="c"
        )
    with pytest.raises(AuditUnavailable, match="hourly cap"):
        await log.count_since(0, risk="critical")
    note = await log.finish(1, "success")
    assert note is not None and "still says 'unknown'" in note
    await log.aclose()


async def test_a_dropped_connection_is_reopened_for_the_next_row(audit_dsn: str) -> None:
    log = PostgresAuditLog(audit_dsn)
    await log.start()
    with psycopg.connect(audit_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    with pytest.raises(AuditUnavailable):
        await log.intent(
            tool="t", action=None, arguments={}, risk="write", decision="allow", confirmation=None, connection="c"
        )
    row = await log.intent(
        tool="t", action=None, arguments={}, risk="write", decision="allow", confirmation=None, connection="c"
    )
    assert [r.id for r in log.rows()] == [row]
    await log.aclose()


async def test_a_tenants_view_stamps_its_rows_and_counts_its_own_calls_only(audit_dsn: str) -> None:
    log = PostgresAuditLog(audit_dsn)
    for tenant in ("alice", "bob", "bob"):
        await log.for_tenant(tenant).intent(
            tool="refund-transaction",
            action=None,
            arguments={},
            risk="critical",
            decision="allow",
            confirmation=None,
            connection="conn",
            outcome="success",
        )
    assert [r.tenant for r in log.rows()] == ["bob", "bob", "alice"]
    assert [r.tenant for r in log.rows(tenant="alice")] == ["alice"]
    assert [r.tenant for r in log.for_tenant("bob").rows()] == ["bob", "bob"]
    assert [r.tenant for r in await log.for_tenant("alice").read_rows()] == ["alice"]  # while serving
    assert await log.for_tenant("alice").count_since(0, risk="critical", connection="conn") == 1
    assert await log.count_since(0, risk="critical", connection="conn") == 3
    await log.aclose()
