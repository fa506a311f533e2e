"""Every answer to an elicitation ends the wait, over a real stdio process speaking raw JSON-RPC."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kartra_mcp.tools.audit import AuditLog
from tests.processes import end, local_env

REFUNDABLE = {"transaction_id": "700001"}


class RawClient:
    """A client that writes JSON-RPC lines as given, so it can answer in ways the SDK never would."""

    def __init__(self, tmp_path: Path) -> None:
        env = local_env(None, KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"), KARTRA_MCP_LOG_LEVEL="ERROR")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def close(self) -> None:
        end(self.process)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def receive(self, timeout: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail("the server said nothing: the call is still waiting")
        message: dict[str, Any] = json.loads(self.process.stdout.readline())
        return message


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"result": None}, id="result-null"),
        pytest.param({"result": {"action": "maybe"}}, id="unknown-action"),
    ],
)
def test_a_malformed_answer_ends_the_wait_sends_nothing_and_is_audited(answer: dict[str, Any], tmp_path: Path) -> None:
    client = RawClient(tmp_path)
    try:
        client.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"elicitation": {"form": {}}},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            }
        )
        assert client.receive()["id"] == 1
        client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "refund-transaction", "arguments": REFUNDABLE}
        client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        question = client.receive()
        assert question["method"] == "elicitation/create"
        client.send({"jsonrpc": "2.0", "id": question["id"], **answer})
        result = client.receive()
    finally:
        client.close()
    assert result["id"] == 2 and result["result"]["isError"] is True
    assert "nothing was sent" in result["result"]["content"][0]["text"]
    rows = AuditLog(tmp_path / "audit.sqlite3").rows()
    assert [(r.tool, r.outcome, r.confirmation) for r in rows] == [("refund-transaction", "declined", "elicitation")]
