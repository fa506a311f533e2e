"""A process killed between the audit intent and the upstream answer leaves `unknown`, never nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from kartra_mcp.sandbox.actions import BY_KEY
from tests.processes import end, spawn, standalone_sandbox, wait_until
from tests.routes import run_rule


def _outcomes(audit_db: Path) -> list[tuple[str, str]]:
    if not audit_db.exists():
        return []
    with sqlite3.connect(audit_db) as db:
        try:
            return [(row[0], row[1]) for row in db.execute("SELECT tool, outcome FROM calls ORDER BY id")]
        except sqlite3.OperationalError:  # the server has created the file but not yet its table
            return []


def test_killing_the_server_mid_refund_leaves_an_unknown_audit_row(tmp_path: Path) -> None:
    # The refund itself hangs at the sandbox; the reads for its preview do not.
    refund = BY_KEY["refund-transaction"].id
    hang = [{"route": run_rule("act", refund), "hang_seconds": 120}]
    with standalone_sandbox(tmp_path / "sandbox", "--faults", json.dumps(hang)) as sandbox:
        audit_db = tmp_path / "audit.sqlite3"
        env = sandbox.client_env(tmp_path)
        argv = [
            sys.executable,
            "-m",
            "kartra_mcp",
            "call",
            "--yes",
            "refund-transaction",
            json.dumps({"transaction_id": "700001"}),
        ]
        process = spawn(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(
                lambda: _outcomes(audit_db) == [("refund-transaction", "unknown")],
                timeout=60,
                what="the refund's intent in the audit log",
            )
            wait_until(
                lambda: any(r.get("runs") == f"/act/action/{refund}" for r in sandbox.requests()),
                timeout=30,
                what="the refund to reach the sandbox",
            )
        finally:
            process.kill()  # the crash: SIGKILL leaves no chance to write an outcome
            process.wait(timeout=10)
            end(process)
        assert process.returncode == -9
    assert _outcomes(audit_db) == [("refund-transaction", "unknown")]
