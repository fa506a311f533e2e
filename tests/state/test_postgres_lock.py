"""The hourly cap of critical calls held across replicas sharing the audit log in a real PostgreSQL, without Redis."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
import pytest

from kartra_mcp.config import Settings
from kartra_mcp.errors import StateUnavailable
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.state.postgres_audit import PostgresAuditLog
from kartra_mcp.state.postgres_lock import AdvisoryLock, advisory_key
from kartra_mcp.tools.call import CallResult, NoConfirmer
from kartra_mcp.tools.critical_cap import AuditCountedCap
from kartra_mcp.tools.policy import DEFAULT_CLASSES, Mode, Policy
from kartra_mcp.tools.spec import Risk
from tests.conftest import FAST_RETRY

pytestmark = pytest.mark.hosted

ALLOWED: dict[Risk, Mode] = {**DEFAULT_CLASSES, Risk.CRITICAL: "allow"}
WAITING = "waiting up to"


@asynccontextmanager
async def _replica(
    settings: Settings, sandbox: Sandbox, dsn: str, *, cap: int | None, lock_timeout: float = 5.0
) -> AsyncIterator[Runtime]:
    """One replica: its own connection to the shared audit log (the sandbox's table), its own executor."""
    log = PostgresAuditLog(dsn, table="sandbox_calls")
    await log.start()
    policy = Policy(classes=ALLOWED, max_critical_calls_per_hour=cap)
    try:
        async with open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY, audit=log) as runtime:
            runtime.executor.critical_cap = AuditCountedCap(log, lock_timeout=lock_timeout)
            yield runtime
    finally:
        await log.aclose()


@asynccontextmanager
async def _held_elsewhere(dsn: str, key: int) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Another replica's session holding the advisory lock `key` until the block ends or it unlocks."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (key,))
        yield other


async def _unlock(other: psycopg.AsyncConnection[Any], key: int) -> None:
    await other.execute("SELECT pg_advisory_unlock(%s)", (key,))


async def _free(dsn: str, key: int) -> bool:
    """Whether another session could take the lock now (it gives it back at once)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as probe:
        cursor = await probe.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        found = await cursor.fetchone()
        return bool(found and found[0])


def _refund(samples: dict[str, Any]) -> dict[str, Any]:
    return {"transaction_id": samples["refundable_transaction"]["transaction_id"]}


def _waits(caplog: pytest.LogCaptureFixture) -> int:
    return sum(WAITING in r.getMessage() for r in caplog.records)


async def test_a_capped_critical_call_waits_for_another_replica_s_lock_and_is_refused_when_it_stays_held(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], audit_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kartra_mcp.state.postgres_lock")
    key = advisory_key("sandbox_calls")
    email = samples["lead"]["email"]
    async with _replica(settings, sandbox, audit_dsn, cap=2, lock_timeout=0.3) as runtime:
        async with _held_elsewhere(audit_dsn, key) as other:
            refused = await runtime.executor.call("refund-transaction", _refund(samples), NoConfirmer())
            # Reads and writes the cap does not count never wait for it.
            read = await runtime.executor.call("get-lead", {"email": email}, NoConfirmer())
            tagged = await runtime.executor.call("assign-tag", {"email": email, "tag_name": "VIP"}, NoConfirmer())
            runs = len(sandbox.run_logs)
            await _unlock(other, key)
            sent = await runtime.executor.call("refund-transaction", _refund(samples), NoConfirmer())
        outcomes = [r.outcome for r in runtime.audit.rows(tool="refund-transaction")]
    assert _waits(caplog) == 1
    assert refused.is_error and refused.structured is not None, refused.text
    assert refused.structured["error"] == "StateUnavailable"
    assert "Another kartra-mcp replica" in refused.text and "nothing was sent" in refused.text, refused.text
    assert "pg_locks" in refused.text, refused.text
    assert not read.is_error and not tagged.is_error, read.text + tagged.text
    assert runs == 2  # the read and the tag, not the refund
    assert not sent.is_error, sent.text
    assert len(sandbox.run_logs) == 3
    assert outcomes == ["success", "refused"]
    assert await _free(audit_dsn, key)


async def test_two_replicas_let_go_together_send_one_critical_call_under_a_cap_of_one(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], audit_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Both wait for the lock before their count, then go at once: the worst case for a cap per replica."""
    caplog.set_level(logging.INFO, logger="kartra_mcp.state.postgres_lock")
    key = advisory_key("sandbox_calls")
    results: list[CallResult] = []
    async with (
        _replica(settings, sandbox, audit_dsn, cap=1) as a,
        _replica(settings, sandbox, audit_dsn, cap=1) as b,
        _held_elsewhere(audit_dsn, key) as other,
    ):

        async def call(runtime: Runtime) -> None:
            results.append(await runtime.executor.call("refund-transaction", _refund(samples), NoConfirmer()))

        async with anyio.create_task_group() as group:
            group.start_soon(call, a)
            group.start_soon(call, b)
            with anyio.fail_after(30):
                # Until both tried the lock (or, without it, both went through).
                while _waits(caplog) < 2 and len(results) < 2:
                    await anyio.sleep(0.01)
            await _unlock(other, key)
        outcomes = sorted(r.outcome for r in a.audit.rows(tool="refund-transaction"))
    assert len(sandbox.run_logs) == 1
    sent, refused = sorted(results, key=lambda r: r.is_error)
    assert not sent.is_error and refused.is_error, [r.text for r in results]
    assert "1 critical call(s) per hour and 1 ran in the last hour" in refused.text, refused.text
    assert outcomes == ["refused", "success"]


async def test_a_lock_cancelled_while_waiting_or_while_held_is_left_free(audit_dsn: str) -> None:
    key = advisory_key("calls")
    lock = AdvisoryLock(audit_dsn, key, what="table calls", timeout=30)
    async with _held_elsewhere(audit_dsn, key) as other:
        with anyio.move_on_after(0.2) as waiting:
            async with lock.held():
                pytest.fail("taken while another session holds it")
        await _unlock(other, key)
    assert waiting.cancelled_caught
    assert await _free(audit_dsn, key)
    with anyio.CancelScope() as scope:
        async with lock.held():
            assert not await _free(audit_dsn, key)
            scope.cancel()
            await anyio.sleep(1)
    assert await _free(audit_dsn, key)


async def test_a_database_that_cannot_be_reached_or_does_not_answer_refuses_the_lock_saying_what_to_check() -> None:
    refused = AdvisoryLock("postgresql://kartra@127.0.0.1:1/nowhere", 1, what="table calls", timeout=5)
    with socket.socket() as silent:  # takes connections and never answers them
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        mute = AdvisoryLock(f"postgresql://kartra@127.0.0.1:{port}/db", 1, what="table calls", timeout=0.3)
        for lock, why in ((refused, "cannot be used"), (mute, "did not answer within 0.3 s")):
            with pytest.raises(StateUnavailable) as caught:
                async with lock.held():
                    pytest.fail("held without a database")
            said = str(caught.value)
            assert why in said and "nothing was sent" in said and "KARTRA_MCP_AUDIT_DSN" in said, said


def test_a_log_and_each_tenant_s_view_of_it_lock_by_their_table_with_a_key_that_never_changes() -> None:
    # Replicas of different versions must agree on it during a rolling update.
    assert advisory_key("calls") == -9192719119000942428
    assert advisory_key("sandbox_calls") == -1456109658173928449
    log = PostgresAuditLog("postgresql://kartra@127.0.0.1:1/nowhere", table="sandbox_calls")
    for audit in (log, log.for_tenant("tenant-1")):
        lock = AuditCountedCap(audit).replicas
        assert isinstance(lock, AdvisoryLock) and lock.key == advisory_key("sandbox_calls")
