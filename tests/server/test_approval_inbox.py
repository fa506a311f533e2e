"""The approval inbox of an HTTP deployment, in a real server process and a real Chromium: the model
gets a pending id and a read-only check-approval; a person with the approver token answers at
/approvals; a webhook hears of each pending call; the MCP bearer approves nothing."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kartra_mcp.server.pages import serve_app_on_loopback
from tests.browser import press, text_of, wait_for
from tests.processes import Server, free_port, local_env
from tests.server.conftest import all_tools, text_of as result_text

HTTP_TOKEN = "mcp-bearer-token-held-by-the-bot-0123456789"
APPROVER = "approver-token-held-by-a-person-0123456789"


@contextmanager
def _deployment(tmp_path: Path, webhook: str) -> Iterator[str]:
    port = free_port()
    server = Server(
        [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox", "--transport", "http", "--port", str(port)],
        env=local_env(
            None,
            KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"),
            KARTRA_MCP_LOG_LEVEL="WARNING",
            KARTRA_MCP_HTTP_TOKEN=HTTP_TOKEN,
            KARTRA_MCP_APPROVER_TOKEN=APPROVER,
            KARTRA_MCP_APPROVAL_WEBHOOK=webhook,
        ),
        logs=tmp_path / "server",
    )
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@asynccontextmanager
async def _webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    heard: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        heard.append(await request.json())
        return JSONResponse({"ok": True})

    async with serve_app_on_loopback(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        yield f"{base}/hook", heard


@asynccontextmanager
async def _client(url: str, mode: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {HTTP_TOKEN}"}, timeout=30, trust_env=False)
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        yield client


def _sign_in_and_answer(browser: WebDriver, link: str, button: str) -> tuple[str, str]:
    browser.get(link)
    browser.find_element(By.ID, "token").send_keys(APPROVER)
    browser.find_element(By.ID, "login").click()
    wait_for(browser, button)
    shown = browser.page_source
    return press(browser, button), shown


@pytest.mark.parametrize(
    ("mode", "answer"), [("legacy", "approve"), ("auto", "approve"), ("legacy", "decline")]
)  # each starts a server process: both eras approve, one declines
async def test_a_person_answers_in_the_inbox_and_the_model_can_only_check(
    answer: str, mode: str, tmp_path: Path, samples: dict[str, Any], browser: WebDriver
) -> None:
    tx = samples["refundable_transaction"]
    async with _webhook() as (hook, heard):
        with _deployment(tmp_path, hook) as url:
            async with _client(url, mode) as client:
                tools = {t.name for t in await all_tools(client)}
                pending = await client.call_tool("refund-transaction", {"transaction_id": tx["transaction_id"]})
                assert pending.structured_content is not None, result_text(pending)
                approval_id = pending.structured_content["approval_id"]
                before = await client.call_tool("check-approval", {"approval_id": approval_id})
                assert heard, "the webhook heard nothing"
                link = heard[0]["inbox"]
                async with httpx2.AsyncClient(trust_env=False) as raw:
                    with_bearer = await raw.get(f"{url}/approvals", headers={"Authorization": f"Bearer {HTTP_TOKEN}"})
                outcome, page = await anyio.to_thread.run_sync(_sign_in_and_answer, browser, link, answer)
                after = await client.call_tool("check-approval", {"approval_id": approval_id})
    assert pending.structured_content["status"] == "pending_approval" and "inbox" in result_text(pending)
    assert "check-approval" in tools and {"confirm-action", "approval-answer"}.isdisjoint(tools)
    assert before.structured_content is not None and before.structured_content["state"] == "pending"
    assert heard[0]["tool"] == "refund-transaction" and tx["lead_email"] in heard[0]["preview"]
    assert link == f"{url}/approvals/{approval_id}"  # no secret: the link needs the approver token
    assert "Approver token" in with_bearer.text and approval_id not in with_bearer.text
    assert after.structured_content is not None
    assert tx["lead_email"] in page and "Approve" in page and "Decline" in page, page[-3000:]
    if answer == "approve":
        assert outcome == "Approved"
        assert after.structured_content["state"] == "approved"
        assert after.structured_content["outcome_is_error"] is False, result_text(after)
    else:
        assert outcome == "Declined"
        assert after.structured_content["state"] == "declined"


async def test_the_inbox_lists_pending_calls_only_to_the_approver(
    tmp_path: Path, samples: dict[str, Any], browser: WebDriver
) -> None:
    tx = samples["refundable_transaction"]
    async with _webhook() as (hook, _):
        with _deployment(tmp_path, hook) as url:
            async with _client(url, "legacy") as client:
                pending = await client.call_tool("refund-transaction", {"transaction_id": tx["transaction_id"]})
                assert pending.structured_content is not None
                approval_id = pending.structured_content["approval_id"]

                def look() -> tuple[str, str]:
                    browser.get(f"{url}/approvals")
                    anonymous = browser.page_source
                    browser.find_element(By.ID, "token").send_keys("not-the-token")
                    browser.find_element(By.ID, "login").click()
                    wait_for(browser, "reason")
                    wrong = text_of(browser, "reason")
                    browser.find_element(By.ID, "token").send_keys(APPROVER)
                    browser.find_element(By.ID, "login").click()
                    wait_for(browser, "pending")
                    return anonymous + wrong, text_of(browser, "pending")

                refused, listed = await anyio.to_thread.run_sync(look)
    assert approval_id not in refused and "not the approver token" in refused
    assert "refund-transaction" in listed
