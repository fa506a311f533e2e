"""Over HTTP, stateless-era calls that want nothing streamed are answered as JSON; the rest still stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp

from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.app import build_server, declaring_headers
from kartra_mcp.server.era_routing import wants_stream
from kartra_mcp.server.http import http_app, listen
from kartra_mcp.server.runtime import Runtime
from tests.server.conftest import Person, text_of
from tests.server.test_logs_and_progress import _flaky_read


class Heard:
    """What a client was told while its calls ran: progress steps and log records."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.logs: list[Any] = []

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.steps.append(progress)

    async def log(self, params: Any) -> None:
        self.logs.append(params)


@asynccontextmanager
async def serving(app: ASGIApp, *, lifespan: Literal["on", "off"] = "on") -> AsyncIterator[str]:
    """`app` served by uvicorn on a loopback socket of this process; yields its MCP URL."""
    with listen("127.0.0.1", 0) as sock:
        web = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_config=None, access_log=False))
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: web.serve(sockets=[sock]))
            while not web.started:
                await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
            finally:
                web.should_exit = True


@asynccontextmanager
async def _served(runtime: Runtime) -> AsyncIterator[str]:
    """The real HTTP app on a loopback socket of this process; yields the MCP URL."""
    server, _ = build_server(runtime)
    async with serving(http_app(server, host="127.0.0.1", token=None)) as url:
        yield url


@asynccontextmanager
async def _client(url: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
    ):
        yield client


def test_only_a_body_asking_for_progress_or_log_records_wants_a_stream() -> None:
    assert wants_stream(b'{"params":{"_meta":{"progressToken":1},"name":"get-lead"}}')
    assert wants_stream(b'{"params":{"_meta":{"io.modelcontextprotocol/logLevel":"info"}}}')
    assert not wants_stream(b'{"params":{"_meta":{"io.modelcontextprotocol/clientInfo":{}},"name":"get-lead"}}')


def test_the_sdk_gets_a_schema_to_check_mcp_param_headers_against_only_when_it_declares_one() -> None:
    plain = {"type": "object", "properties": {"email": {"type": "string"}}}
    declaring = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}
    schemas: dict[str, Any] = {"plain": plain, "declaring": declaring}
    lookup = declaring_headers(schemas.get)
    assert lookup("plain") is None
    assert lookup("declaring") is declaring
    assert lookup("missing") is None
    schemas["plain"] = {**plain, "properties": {"email": {"type": "string", "x-mcp-header": "Email"}}}
    assert lookup("plain") is schemas["plain"]  # a tool whose schema changed is looked at again


async def test_a_2026_call_over_http_still_reports_progress_and_logs_when_asked_and_answers_when_not(
    runtime: Runtime, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    email = samples["lead_with_transactions"]["email"]
    heard = Heard()
    with anyio.fail_after(60):
        async with _served(runtime) as url, _client(url, "auto", logging_callback=heard.log, log_level="warning") as c:
            plain = await c.call_tool("get-lead", {"email": email})
            _flaky_read(sandbox)
            retried = await c.call_tool("get-lead", {"email": email}, progress_callback=heard.progress)
    assert not plain.is_error and not retried.is_error, text_of(retried)
    assert heard.steps == [1, 2]
    assert len(heard.logs) == 2


async def test_a_2025_call_over_http_still_asks_the_person_mid_call(runtime: Runtime) -> None:
    person = Person("accept")
    with anyio.fail_after(60):
        async with _served(runtime) as url, _client(url, "legacy", elicitation_callback=person) as client:
            removal = await client.call_tool(
                "unassign-tag", {"email": "henry.jones.1@example.com", "tag_name": "Customer"}
            )
    assert not removal.is_error, text_of(removal)
    assert len(person.asked) == 1
