"""The approval page in the person's browser (stdio, no elicitation, no MCP Apps), in a real Chromium:
a refund runs only after Approve on the page, and a replay, a forged or expired link and a
cross-site POST run nothing and are audited."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.app import build_server
from kartra_mcp.server.confirmers import Deployment
from kartra_mcp.server.pages import serve_app_on_loopback, serve_on_loopback
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.approval import Approvals
from kartra_mcp.tools.policy import Policy
from tests.browser import press, text_of, wait_for
from tests.conftest import FAST_RETRY
from tests.server.conftest import all_tools, text_of as result_text


@dataclass
class Opened:
    """The browser hook: the pages the server asked the person's browser to open."""

    urls: list[str] = field(default_factory=list)
    works: bool = True

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        return self.works

    async def first(self) -> str:
        with anyio.fail_after(20):
            while not self.urls:
                await anyio.sleep(0.02)
        return self.urls[0]


@dataclass
class Waiting:
    """A tool call running in the background while the person answers."""

    result: CallToolResult | None = None
    progress: list[str] = field(default_factory=list)


@asynccontextmanager
async def stdio_like(
    settings: Settings, sandbox: Sandbox, mode: str, opened: Opened, clock: Callable[[], float] | None = None
) -> AsyncIterator[tuple[Runtime, Client]]:
    """The server as a stdio deployment runs it: default policy, the approval page on loopback."""
    async with open_runtime(settings, sandbox=sandbox, policy=Policy(), retry=FAST_RETRY) as runtime:
        if clock is not None:
            runtime.executor.approvals = Approvals(runtime.audit, ttl=300, clock=clock)
        pages = runtime.executor.approvals
        assert pages is not None
        async with serve_on_loopback(pages):
            server, _ = build_server(runtime, deployment=Deployment(approvals=pages, opener=opened, timeout=60))
            async with Client(server, mode=mode) as client:
                yield runtime, client


@asynccontextmanager
async def calling(client: Client, tool: str, arguments: dict[str, Any]) -> AsyncIterator[Waiting]:
    waiting = Waiting()

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        waiting.progress.append(message or "")

    async def call() -> None:
        waiting.result = await client.call_tool(tool, arguments, progress_callback=progress)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        yield waiting


def _refund(samples: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "refund-transaction", {"transaction_id": samples["refundable_transaction"]["transaction_id"]}


def _refunds(sandbox: Sandbox, samples: dict[str, Any]) -> int:
    return len(sandbox.account.children_of.get(int(samples["refundable_transaction"]["transaction_id"]), []))


async def _visit(browser: WebDriver, url: str) -> None:
    await anyio.to_thread.run_sync(browser.get, url)


async def _press(browser: WebDriver, button: str) -> str:
    return await anyio.to_thread.run_sync(press, browser, button)


def _everything_the_model_sees(result: CallToolResult, tools: list[Any]) -> str:
    return json.dumps(result.model_dump(mode="json")) + json.dumps([t.model_dump(mode="json") for t in tools])


async def test_the_refund_runs_only_after_the_person_approves_on_the_page(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened = Opened()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, mode, opened) as (runtime, client):
        async with calling(client, tool, arguments) as waiting:
            url = await opened.first()
            await _visit(browser, url)
            page = browser.page_source
            assert _refunds(sandbox, samples) == 0
            assert await _press(browser, "approve") == "Approved"
        tools = await all_tools(client)
        rows = runtime.audit.rows(tool=tool)
    assert waiting.result is not None
    assert not waiting.result.is_error, result_text(waiting.result)
    assert _refunds(sandbox, samples) == 1
    for shown in ("Approve", "Decline", samples["refundable_transaction"]["lead_email"], "Time left"):
        assert shown in page
    assert waiting.progress and "browser" in waiting.progress[0] and "120" not in waiting.progress[0]
    secret = parse_qs(urlsplit(url).query)["k"][0]
    seen = _everything_the_model_sees(waiting.result, tools)
    assert url not in seen and secret not in seen and urlsplit(url).netloc not in seen
    assert {t.name for t in tools}.isdisjoint({"confirm-action", "approval-answer"})
    assert [(r.outcome, r.confirmation) for r in rows] == [("success", "browser")]
    assert rows[0].answered_by == "person at 127.0.0.1"


async def test_decline_on_the_page_sends_nothing(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened = Opened()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, mode, opened) as (runtime, client):
        async with calling(client, tool, arguments) as waiting:
            await _visit(browser, await opened.first())
            assert await _press(browser, "decline") == "Declined"
        rows = runtime.audit.rows(tool=tool)
    assert waiting.result is not None and waiting.result.is_error
    assert "declined" in result_text(waiting.result)
    assert _refunds(sandbox, samples) == 0
    assert [(r.outcome, r.confirmation) for r in rows] == [("declined", "browser")]


def _form(url: str, answer: str = "approve", **extra: str) -> dict[str, str]:
    query = parse_qs(urlsplit(url).query)
    return {"k": query["k"][0], "answer": answer, **extra}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _csrf_on(browser: WebDriver, url: str) -> str:
    """Open the page and read the CSRF token its form carries."""
    await _visit(browser, url)
    return browser.find_element("name", "csrf").get_attribute("value") or ""


async def _post_from_the_page_origin(url: str, form: dict[str, str]) -> httpx2.Response:
    """An answer as the page itself would send it: its own origin, its form fields."""
    async with httpx2.AsyncClient(trust_env=False) as http:
        return await http.post(url.split("?")[0], data=form, headers={"Origin": _origin(url)})


async def test_a_replayed_answer_runs_nothing_more(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened = Opened()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, "legacy", opened) as (runtime, client):
        async with calling(client, tool, arguments):
            url = await opened.first()
            csrf = await _csrf_on(browser, url)
            assert await _press(browser, "approve") == "Approved"
        # The same answer again, from the page's own origin, with its secret and token: refused.
        replay = await _post_from_the_page_origin(url, _form(url, csrf=csrf))
        await _visit(browser, url)
        after = text_of(browser, "outcome")
        rows = runtime.audit.rows(tool=tool)
    assert replay.status_code == 403 and "already approved" in replay.text
    assert after == "Approved"  # the page shows the first answer; it asks nothing more
    assert _refunds(sandbox, samples) == 1
    assert [(r.outcome, r.confirmation) for r in reversed(rows)] == [("success", "browser"), ("refused", "browser")]


async def test_a_forged_link_runs_nothing(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened = Opened()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, "legacy", opened) as (runtime, client):
        async with calling(client, tool, arguments):
            url = await opened.first()
            forged = url.split("?k=")[0] + "?k=" + "A" * 43
            await _visit(browser, forged)
            shown = text_of(browser, "outcome")
            csrf = await _csrf_on(browser, url)
            posted = await _post_from_the_page_origin(url, _form(forged, csrf=csrf))
            assert posted.status_code == 403
            assert _refunds(sandbox, samples) == 0
            assert await _press(browser, "decline") == "Declined"
        rows = runtime.audit.rows(tool=tool)
    assert shown == "This approval cannot be used"
    assert _refunds(sandbox, samples) == 0
    # Opening the forged link and posting with it: both refused and audited.
    assert [r.outcome for r in reversed(rows)] == ["refused", "refused", "declined"]
    assert all("forged" in (r.error or "") for r in rows[1:])


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_an_expired_link_runs_nothing(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened, clock = Opened(), _Clock()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, "legacy", opened, clock) as (runtime, client):
        async with calling(client, tool, arguments) as waiting:
            await _visit(browser, await opened.first())
            clock.now += 301
            shown = await _press(browser, "approve")
        rows = runtime.audit.rows(tool=tool)
    assert shown == "This approval cannot be used"
    assert waiting.result is not None and waiting.result.is_error
    assert _refunds(sandbox, samples) == 0
    assert [r.outcome for r in reversed(rows)] == ["refused", "declined"]
    assert "expired" in (rows[-1].error or "")


@asynccontextmanager
async def attacker_site(target: str, fields: dict[str, str]) -> AsyncIterator[str]:
    """Another origin on this machine whose page posts a form to the approval page as soon as it loads."""
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    page = (
        f'<html><body><form id="f" method="post" action="{target}">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script></body></html>"
    )

    async def index(request: Any) -> HTMLResponse:
        return HTMLResponse(page)

    async with serve_app_on_loopback(Starlette(routes=[Route("/", index)])) as base:
        yield base


@pytest.mark.parametrize("with_secret", [True, False], ids=["even-with-the-secret", "without-the-secret"])
async def test_a_cross_site_post_runs_nothing(
    with_secret: bool, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], browser: WebDriver
) -> None:
    opened = Opened()
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, "legacy", opened) as (runtime, client):
        async with calling(client, tool, arguments):
            url = await opened.first()
            fields = _form(url) if with_secret else {"answer": "approve"}
            async with attacker_site(url.split("?")[0], fields) as evil:
                await _visit(browser, evil)
                await anyio.to_thread.run_sync(wait_for, browser, "outcome")
                shown = text_of(browser, "outcome")
            assert _refunds(sandbox, samples) == 0
            await _visit(browser, url)
            assert await _press(browser, "decline") == "Declined"
        rows = runtime.audit.rows(tool=tool)
    assert shown == "This approval cannot be used"
    assert _refunds(sandbox, samples) == 0
    assert [r.outcome for r in reversed(rows)] == ["refused", "declined"]
    assert "another origin" in (rows[-1].error or "")


async def test_with_no_browser_to_open_the_call_is_refused(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    opened = Opened(works=False)
    tool, arguments = _refund(samples)
    async with stdio_like(settings, sandbox, mode, opened) as (runtime, client):
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows(tool=tool)
    assert result.is_error and "refuses it" in result_text(result)
    assert _refunds(sandbox, samples) == 0
    assert [r.outcome for r in rows] == ["refused"]
