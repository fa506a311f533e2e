"""Every answer to an elicitation ends the wait, over a real stdio process speaking raw JSON-RPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kartra_mcp.tools.audit import AuditLog, sandbox_audit_path
from tests.server.conftest import RawClient

REFUNDABLE = {"transaction_id": "700001"}


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
        client.initialize({"elicitation": {"form": {}}})
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
    rows = AuditLog(sandbox_audit_path(tmp_path / "audit.sqlite3")).rows()
    assert [(r.tool, r.outcome, r.confirmation) for r in rows] == [("refund-transaction", "declined", "elicitation")]
