"""MCP Apps: a host that declares `io.modelcontextprotocol/ui` renders the `ui://` approval view in a
real Chromium and approves through the app-only tool; nothing the model sees carries its secret, and
a client that does not declare the extension never sees that tool.

The host here is a small harness page playing the host's postMessage role (ui/initialize, the
tool-result notification, forwarding the view's tools/call to the server through the test's MCP
client, and refusing tools not visible to apps), as the MCP Apps specification describes it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import Client
from mcp.client.extension import advertise
from mcp.types import CallToolResult, TextResourceContents
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.app import build_server
from kartra_mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, META_KEY, VIEW_URI
from kartra_mcp.server.pages import serve_app_on_loopback
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.policy import Policy
from tests.conftest import FAST_RETRY
from tests.server.conftest import all_tools, text_of

APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})

_HARNESS = """<!doctype html><html><head><meta charset="utf-8"><title>test host</title></head><body>
<iframe id="view" sandbox="allow-scripts" style="width:100%;height:600px"></iframe>
<script>
var data = JSON.parse(document.getElementById("data").textContent);
var frame = document.getElementById("view");
function reply(id, result, error) {
  var msg = {jsonrpc: "2.0", id: id};
  if (error) msg.error = error; else msg.result = result;
  frame.contentWindow.postMessage(msg, "*");
}
window.addEventListener("message", function (event) {
  if (event.source !== frame.contentWindow) return;
  var m = event.data;
  if (m.method === "ui/initialize") {
    reply(m.id, {protocolVersion: "2026-01-26", hostInfo: {name: "test-host", version: "1"},
                 hostCapabilities: {serverTools: {}}, hostContext: {theme: "light"}});
  } else if (m.method === "ui/notifications/initialized") {
    frame.contentWindow.postMessage({jsonrpc: "2.0", method: "ui/notifications/tool-input",
                                     params: {arguments: data.arguments}}, "*");
    frame.contentWindow.postMessage({jsonrpc: "2.0", method: "ui/notifications/tool-result",
                                     params: data.result}, "*");
  } else if (m.method === "tools/call") {
    if (data.appTools.indexOf(m.params.name) < 0) {
      reply(m.id, null, {code: -32601, message: "not callable by apps"});
      return;
    }
    fetch("/bridge", {method: "POST", body: JSON.stringify(m.params)}).then(function (r) { return r.json(); })
      .then(function (result) { reply(m.id, result); });
  }
});
frame.srcdoc = data.view;
</script></body></html>"""


@asynccontextmanager
async def apps_host(
    client: Client, view: str, arguments: dict[str, Any], result: CallToolResult, app_tools: list[str]
) -> AsyncIterator[str]:
    data = {
        "view": view,
        "arguments": arguments,
        "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
        "appTools": app_tools,
    }
    embedded = json.dumps(data).replace("</", "<\\/")
    page = _HARNESS.replace("<body>", f'<body><script type="application/json" id="data">{embedded}</script>', 1)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def bridge(request: Request) -> JSONResponse:
        params = await request.json()
        answered = await client.call_tool(params["name"], params.get("arguments") or {})
        return JSONResponse(answered.model_dump(mode="json", by_alias=True, exclude_none=True))

    routes = [Route("/", index), Route("/bridge", bridge, methods=["POST"])]
    async with serve_app_on_loopback(Starlette(routes=routes)) as base:
        yield base


@asynccontextmanager
async def guarded(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, sandbox=sandbox, policy=Policy(), retry=FAST_RETRY) as runtime:
        yield runtime


def _press_in_view(browser: WebDriver, url: str, button: str) -> tuple[str, str]:
    browser.get(url)
    browser.switch_to.frame(browser.find_element(By.ID, "view"))
    try:
        wait = WebDriverWait(browser, 20)
        wait.until(expected_conditions.element_to_be_clickable((By.ID, button)))
        shown = browser.find_element(By.TAG_NAME, "main").text
        browser.find_element(By.ID, button).click()
        wait.until(lambda d: d.find_element(By.ID, "outcome").text)
        return shown, browser.find_element(By.ID, "outcome").text
    finally:
        browser.switch_to.default_content()


async def test_an_apps_host_renders_the_view_and_approves_through_the_app_only_tool(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    tx = samples["refundable_transaction"]
    arguments = {"transaction_id": tx["transaction_id"]}
    async with guarded(settings, sandbox) as runtime:
        server, _ = build_server(runtime)
        async with Client(server, mode=mode, extensions=[APPS]) as client:
            tools = {t.name: t for t in await all_tools(client)}
            pending = await client.call_tool("refund-transaction", arguments)
            view = (await client.read_resource(VIEW_URI)).contents[0]
            assert isinstance(view, TextResourceContents)
            app_tools = [n for n, t in tools.items() if "app" in ((t.meta or {}).get("ui") or {}).get("visibility", [])]
            async with apps_host(client, view.text, arguments, pending, app_tools) as url:
                shown, outcome = await anyio.to_thread.run_sync(_press_in_view, browser, url, "approve")
        rows = runtime.audit.rows(tool="refund-transaction")
    assert (tools["refund-transaction"].meta or {})["ui"] == {"resourceUri": VIEW_URI}
    assert (tools["approval-answer"].meta or {})["ui"]["visibility"] == ["app"]
    assert view.mime_type == APP_MIME_TYPE
    secret = (pending.meta or {})[META_KEY]["secret"]
    model_visible = json.dumps([c.model_dump(mode="json") for c in pending.content]) + json.dumps(
        pending.structured_content
    )
    assert secret not in model_visible and "pending_approval" in model_visible
    assert tx["lead_email"] in shown and "Approve" in shown
    assert outcome.startswith("Approved"), outcome
    assert sandbox.account.refunded_amount(int(tx["transaction_id"])) > 0
    assert [(r.outcome, r.confirmation) for r in reversed(rows)] == [
        ("awaiting_confirmation", "app"),
        ("success", "app"),
    ]


async def test_the_app_only_tool_needs_the_views_secret_and_runs_once(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]
    async with guarded(settings, sandbox) as runtime:
        server, _ = build_server(runtime)
        async with Client(server, mode="legacy", extensions=[APPS]) as client:
            pending = await client.call_tool("refund-transaction", {"transaction_id": tx["transaction_id"]})
            approval = (pending.meta or {})[META_KEY]
            answer = {"approval_id": approval["approval_id"], "answer": "approve"}
            forged = await client.call_tool("approval-answer", {**answer, "secret": "x" * 43})
            first = await client.call_tool("approval-answer", {**answer, "secret": approval["secret"]})
            replayed = await client.call_tool("approval-answer", {**answer, "secret": approval["secret"]})
        rows = runtime.audit.rows(tool="refund-transaction")
    assert forged.is_error and "forged" in text_of(forged)
    assert not first.is_error, text_of(first)
    assert replayed.is_error and "already approved" in text_of(replayed)
    assert len(sandbox.account.children_of[int(tx["transaction_id"])]) == 1
    assert sorted(r.outcome for r in rows) == ["awaiting_confirmation", "refused", "refused", "success"]


async def test_a_client_without_the_extension_never_sees_the_app_only_tool(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]
    async with guarded(settings, sandbox) as runtime:
        server, _ = build_server(runtime)
        async with Client(server, mode=mode, extensions=[APPS]) as apps_client:
            pending = await apps_client.call_tool("refund-transaction", {"transaction_id": tx["transaction_id"]})
        approval = (pending.meta or {})[META_KEY]
        async with Client(server, mode=mode) as plain:
            tools = await all_tools(plain)
            called = await plain.call_tool(
                "approval-answer",
                {"approval_id": approval["approval_id"], "secret": approval["secret"], "answer": "approve"},
            )
            resources = await plain.list_resources()
    assert "approval-answer" not in {t.name for t in tools}
    assert all(not (t.meta or {}).get("ui") for t in tools)
    assert VIEW_URI not in {str(r.uri) for r in resources.resources}
    assert called.is_error and "Unknown tool" in text_of(called)
    assert sandbox.account.refunded_amount(int(tx["transaction_id"])) == 0
