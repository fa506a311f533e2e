"""The hourly cap counted in an audit log file, held against the other processes that share the file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kartra_mcp.config import Settings
from kartra_mcp.errors import StateUnavailable
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.call import NoConfirmer
from kartra_mcp.tools.critical_cap import AuditCountedCap, cap_lock_path
from kartra_mcp.tools.policy import DEFAULT_CLASSES, Mode, Policy
from kartra_mcp.tools.spec import Risk
from tests.conftest import FAST_RETRY
from tests.processes import file_lock_held

ALLOWED: dict[Risk, Mode] = {**DEFAULT_CLASSES, Risk.CRITICAL: "allow"}


@asynccontextmanager
async def _runtime(settings: Settings, sandbox: Sandbox, *, cap: int | None) -> AsyncIterator[Runtime]:
    policy = Policy(classes=ALLOWED, max_critical_calls_per_hour=cap)
    async with open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime:
        yield runtime


def _lock_of(runtime: Runtime) -> Path:
    assert isinstance(runtime.audit, AuditLog) and runtime.audit.path is not None
    return cap_lock_path(runtime.audit.path)


def _refunded(sandbox: Sandbox, samples: dict[str, Any]) -> bool:
    return sandbox.account.refunded_amount(int(samples["refundable_transaction"]["transaction_id"])) > 0


async def test_a_capped_critical_call_is_refused_naming_the_lock_another_process_keeps(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    refund = {"transaction_id": samples["refundable_transaction"]["transaction_id"]}
    email = samples["lead"]["email"]
    async with _runtime(settings, sandbox, cap=1) as runtime:
        runtime.executor.critical_cap = AuditCountedCap(runtime.audit, lock_timeout=0.2)
        with file_lock_held(_lock_of(runtime)):
            refused = await runtime.executor.call("refund-transaction", refund, NoConfirmer())
            # Reads and writes the cap does not count never wait for it.
            read = await runtime.executor.call("get-lead", {"email": email}, NoConfirmer())
            tagged = await runtime.executor.call("assign-tag", {"email": email, "tag_name": "VIP"}, NoConfirmer())
        rows = runtime.audit.rows(tool="refund-transaction")
    assert refused.is_error and refused.structured is not None, refused.text
    assert refused.structured["error"] == "StateUnavailable"
    assert str(_lock_of(runtime)) in refused.text and "nothing was sent" in refused.text, refused.text
    assert not read.is_error and not tagged.is_error, read.text + tagged.text
    assert not _refunded(sandbox, samples)
    assert [r.outcome for r in rows] == ["refused"]


async def test_a_lock_file_that_cannot_be_opened_refuses_only_capped_critical_calls(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    refund = {"transaction_id": samples["refundable_transaction"]["transaction_id"]}
    async with _runtime(settings, sandbox, cap=1) as runtime:
        _lock_of(runtime).mkdir()  # a directory where the lock file belongs: it cannot be opened
        refused = await runtime.executor.call("refund-transaction", refund, NoConfirmer())
        read = await runtime.executor.call("get-lead", {"email": samples["lead"]["email"]}, NoConfirmer())
    assert refused.is_error and str(_lock_of(runtime)) in refused.text, refused.text
    assert "KARTRA_MCP_AUDIT_DB" in refused.text and "nothing was sent" in refused.text, refused.text
    assert not read.is_error and not _refunded(sandbox, samples)
    async with _runtime(settings, sandbox, cap=None) as uncapped:
        sent = await uncapped.executor.call("refund-transaction", refund, NoConfirmer())
    assert not sent.is_error and _refunded(sandbox, samples), sent.text


def test_an_audit_log_in_a_file_or_a_tenant_s_view_of_it_takes_the_lock_file_and_one_in_memory_none(
    tmp_path: Path,
) -> None:
    memory, on_disk = AuditLog(None), AuditLog(tmp_path / "audit.sqlite3")
    try:
        assert AuditCountedCap(memory).across is None
        # Hosted, each tenant counts in a view of the same file, so it is held against the other processes too.
        for audit in (on_disk, on_disk.for_tenant("tenant-1")):
            across = AuditCountedCap(audit).across
            assert across is not None and across.path == (tmp_path / "audit.sqlite3.cap-lock").resolve()
    finally:
        memory.close()
        on_disk.close()


async def test_an_audit_log_opened_through_a_link_to_its_file_is_held_by_the_same_lock(tmp_path: Path) -> None:
    """SQLite follows the link to one database, so the cap must not split into two locks around it."""
    real = tmp_path / "state" / "audit.sqlite3"
    AuditLog(real).close()
    linked = tmp_path / "audit.sqlite3"
    linked.symlink_to(real)
    audit = AuditLog(linked)
    try:
        with file_lock_held(cap_lock_path(real)), pytest.raises(StateUnavailable) as refused:
            async with AuditCountedCap(audit, lock_timeout=0.2).reserve("connection", 1):
                pass
    finally:
        audit.close()
    assert str(cap_lock_path(real)) in str(refused.value)
