"""A real stdio server, a client with no elicitation and no MCP Apps, the default policy: the refund
runs only after the person answers Approve on the page their BROWSER opened; nothing the model sees
or can list could approve it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import visit_and_press
from tests.server.conftest import all_tools, text_of

_RECORD = "import sys\nwith open(sys.argv[1], 'a') as f:\n    f.write(sys.argv[2] + '\\n')\n"


async def test_the_refund_runs_only_after_approve_on_the_page_browser_opened(
    mode: str, tmp_path: Path, samples: dict[str, Any], browser: WebDriver
) -> None:
    record, opened = tmp_path / "record.py", tmp_path / "opened.txt"
    record.write_text(_RECORD)
    tx = samples["refundable_transaction"]
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kartra_mcp", "serve", "--sandbox"],
        env={
            "KARTRA_MCP_AUDIT_DB": str(tmp_path / "audit.sqlite3"),
            "KARTRA_MCP_LOG_LEVEL": "WARNING",
            # What a person sets to choose their browser; here a program that writes down what it opens.
            "BROWSER": f"{sys.executable} {record} {opened} %s",
            "PATH": "/usr/bin:/bin",
        },
    )
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    result = None
    with anyio.fail_after(90):
        async with Client(params, mode=mode) as client:
            tools = await all_tools(client)

            async def call() -> None:
                nonlocal result
                result = await client.call_tool(
                    "refund-transaction", {"transaction_id": tx["transaction_id"]}, progress_callback=on_progress
                )

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                while not (opened.exists() and opened.read_text().endswith("\n")):
                    await anyio.sleep(0.05)
                url = opened.read_text().strip()
                before = await client.call_tool("get-transaction-details", {"transaction_id": tx["transaction_id"]})
                outcome = await anyio.to_thread.run_sync(visit_and_press, browser, url, "approve")
            details = await client.call_tool("retrieve-transactions-from-lead", {"email": tx["lead_email"]})
    assert result is not None
    assert not result.is_error, text_of(result)
    assert outcome == "Approved"
    assert messages and "browser" in messages[0]
    refunds = [
        t
        for t in (details.structured_content or {}).get("transaction_list", [])
        if str(t.get("transaction_parent_id")) == str(tx["transaction_id"])
    ]
    assert len(refunds) == 1 and not before.is_error
    seen = json.dumps(result.model_dump(mode="json")) + json.dumps([t.model_dump(mode="json") for t in tools])
    assert url not in seen and url.split("?k=")[1] not in seen and url.split("/approvals")[0] not in seen
    assert {t.name for t in tools}.isdisjoint({"confirm-action", "approval-answer"})
