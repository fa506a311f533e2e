"""The hourly cap of critical calls holds for real kartra-mcp processes sharing one audit log file,
as Claude Desktop and Cursor each start their own with the same default path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.critical_cap import cap_lock_path
from tests.processes import StandaloneSandbox, end, file_lock_held, spawn, standalone_sandbox, wait_until

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the lock is held from the test by flock")

POLICY = """
[classes]
critical = "allow"

[limits]
max_critical_calls_per_hour = 1
"""
WAITING = "waiting up to"


@contextmanager
def _refund(sandbox: StandaloneSandbox, state: Path, name: str) -> Iterator[subprocess.Popen[str]]:
    """`kartra-mcp -v call refund-transaction` in a process of its own, its log in `state/name.log`."""
    (state / "policy.toml").write_text(POLICY)
    env = sandbox.client_env(state, KARTRA_MCP_POLICY=str(state / "policy.toml"))
    refund = json.dumps({"transaction_id": sandbox.state()["samples"]["refundable_transaction"]["transaction_id"]})
    with (state / f"{name}.log").open("w") as log:
        process = spawn(
            [sys.executable, "-m", "kartra_mcp", "-v", "call", "refund-transaction", refund],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        yield process
    finally:
        end(process)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_waiting(process: subprocess.Popen[str], log: Path) -> None:
    """Until `process` says it waits for the lock; fails at once if it went on without waiting."""

    def waiting() -> bool:
        if WAITING in log.read_text():
            return True
        if process.poll() is not None:
            pytest.fail(
                f"the call went on without waiting for the lock (exit {process.returncode}):\n{log.read_text()}"
            )
        return False

    wait_until(waiting, timeout=60, what=f"the call to wait for the lock:\n{log.read_text()}")


def _finished(process: subprocess.Popen[str], log: Path) -> tuple[int, str]:
    try:
        printed, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the call did not finish:\n{log.read_text()}")
    return process.returncode, printed


def _runs(sandbox: StandaloneSandbox) -> Any:
    return sandbox.state()["counts"]["action_runs"]


def test_a_critical_call_waits_while_another_process_counts_and_then_runs(tmp_path: Path) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        before = _runs(sandbox)
        with (
            file_lock_held(cap_lock_path(tmp_path / "audit.sqlite3")) as release,
            _refund(sandbox, tmp_path, "a") as process,
        ):
            _wait_for_waiting(process, tmp_path / "a.log")
            assert _runs(sandbox) == before  # nothing sent while the other process holds the lock
            release()
            status, printed = _finished(process, tmp_path / "a.log")
        assert status == 0, printed + (tmp_path / "a.log").read_text()
        assert _runs(sandbox) == before + 1


def test_two_processes_sharing_an_audit_log_send_one_critical_call_under_a_cap_of_one(tmp_path: Path) -> None:
    """Both are let go at the same moment, each before its count: the worst case for a cap per process."""
    with standalone_sandbox(tmp_path / "sandbox") as sandbox, ExitStack() as stack:
        before = _runs(sandbox)
        release = stack.enter_context(file_lock_held(cap_lock_path(tmp_path / "audit.sqlite3")))
        calls = {name: stack.enter_context(_refund(sandbox, tmp_path, name)) for name in ("a", "b")}
        for name, process in calls.items():
            _wait_for_waiting(process, tmp_path / f"{name}.log")
        release()
        finished = sorted(_finished(process, tmp_path / f"{name}.log") for name, process in calls.items())
        runs = _runs(sandbox)
    (sent, _), (refused, said) = finished
    assert (sent, refused) == (0, 1), finished
    assert "1 critical call(s) per hour and 1 ran in the last hour" in said, said
    assert runs == before + 1
    log = AuditLog(tmp_path / "audit.sqlite3", check_writable=False)
    try:
        assert sorted(r.outcome for r in log.rows(tool="refund-transaction")) == ["refused", "success"]
    finally:
        log.close()
