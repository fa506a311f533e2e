"""URL-mode elicitation, over a real stdio process: a client that can open a URL but show no form opens
the approval page; the call proceeds when the person answers there, in a real Chromium."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from kartra_mcp.tools.audit import AuditLog, sandbox_audit_path
from tests.browser import visit_and_press
from tests.server.conftest import RawClient

REFUNDABLE = {"transaction_id": "700001"}


@pytest.mark.parametrize(("button", "outcome"), [("approve", "success"), ("decline", "declined")])
async def test_the_client_opens_the_approval_page_and_the_call_follows_the_answer(
    button: str, outcome: str, tmp_path: Path, browser: WebDriver
) -> None:
    # No BROWSER and no display: only the client's own URL elicitation can reach the person.
    client = RawClient(tmp_path, BROWSER="false")
    try:
        client.initialize({"elicitation": {"url": {}}})
        call = {"name": "refund-transaction", "arguments": REFUNDABLE}
        client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        question = await anyio.to_thread.run_sync(client.receive)
        params = question["params"]
        assert question["method"] == "elicitation/create" and params["mode"] == "url"
        client.send({"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept"}})
        shown = await anyio.to_thread.run_sync(visit_and_press, browser, params["url"], button)
        messages = [await anyio.to_thread.run_sync(client.receive) for _ in range(2)]
    finally:
        client.close()
    result = next(m for m in messages if m.get("id") == 2)["result"]
    completed = [m for m in messages if m.get("method") == "notifications/elicitation/complete"]
    assert shown == ("Approved" if button == "approve" else "Declined")
    assert result["isError"] is (button == "decline")
    assert params["url"] not in str(result)
    assert completed and completed[0]["params"]["elicitationId"] == params["elicitationId"]
    rows = AuditLog(sandbox_audit_path(tmp_path / "audit.sqlite3")).rows()
    assert [(r.outcome, r.confirmation) for r in rows] == [(outcome, "url")]


async def test_a_2026_client_opens_the_approval_page_between_two_rounds(tmp_path: Path, browser: WebDriver) -> None:
    client = RawClient(tmp_path, BROWSER="false")
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    call = {"name": "refund-transaction", "arguments": REFUNDABLE, "_meta": meta}
    try:
        client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        first = (await anyio.to_thread.run_sync(client.receive))["result"]
        (key, asked), *_ = first["inputRequests"].items()
        shown = await anyio.to_thread.run_sync(visit_and_press, browser, asked["params"]["url"], "approve")
        retry = {**call, "inputResponses": {key: {"action": "accept"}}, "requestState": first["requestState"]}
        client.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": retry})
        result = (await anyio.to_thread.run_sync(client.receive))["result"]
    finally:
        client.close()
    assert first["resultType"] == "input_required" and asked["params"]["mode"] == "url"
    assert shown == "Approved"
    assert result["isError"] is False, result
    rows = AuditLog(sandbox_audit_path(tmp_path / "audit.sqlite3")).rows()
    assert [(r.outcome, r.confirmation) for r in reversed(rows)] == [
        ("awaiting_confirmation", "url"),
        ("success", "url"),
    ]
