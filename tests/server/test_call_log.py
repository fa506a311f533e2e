"""The one line a served tool call leaves in the server's log."""

from __future__ import annotations

import re

import pytest

from kartra_mcp.server.runtime import Runtime
from tests.server.conftest import Person, connect

LEAD = {"email": "henry.jones.1@example.com"}


async def test_each_call_logs_its_tool_class_decision_outcome_and_duration_and_never_its_arguments(
    runtime: Runtime, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="kartra_mcp.calls")
    async with connect(runtime, mode, Person("decline")) as client:
        await client.call_tool("get-lead", LEAD)
        await client.call_tool("refund-transaction", {"transaction_id": "700001"})
        await client.call_tool("assign-tag", {**LEAD, "tag_name": "VIP"})
        await client.call_tool("no-such-tool", {})
        await client.call_tool("get-lead", {"email": "not an email", "lead_id": "1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "kartra_mcp.calls"]
    assert all(re.search(r" \d+ ms$", line) for line in lines), lines
    assert [re.sub(r" \d+ ms$", "", line) for line in lines] == [
        "get-lead class=read decision=allow outcome=success",
        # 2026-07-28 asks the person between two rounds of the call, each a request of its own.
        *(
            ["refund-transaction class=critical decision=confirm outcome=awaiting_confirmation"]
            if mode == "auto"
            else []
        ),
        "refund-transaction class=critical decision=confirm outcome=declined",
        "assign-tag class=write decision=allow outcome=success",
        "no-such-tool class=- decision=- outcome=failed",
        "get-lead class=- decision=- outcome=failed",
    ]
    assert not any("henry" in line or "700001" in line for line in lines)
