"""Over HTTP, handshake-era (2025-11-25) requests are answered as JSON unless something streams first.

The SDK's client is used where the behaviour is what a client sees; raw HTTP where the wire itself
(content types, status codes, session headers) is the point.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ListToolsResult, PaginatedRequestParams, ResourceUpdatedNotification, Tool
from starlette.types import Message, Receive, Scope, Send

from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.sandbox.faults import FaultRule
from kartra_mcp.server.app import build_server
from kartra_mcp.server.handshake_http import HandshakeSessions
from kartra_mcp.server.resources import AUDIT_URI
from kartra_mcp.server.runtime import Runtime
from tests.routes import ran, run_rule
from tests.server.conftest import Person, text_of
from tests.server.test_era_routing import Heard, _served, serving
from tests.server.test_logs_and_progress import _flaky_read

ACCEPT = {"Accept": "application/json, text/event-stream"}
VERSION = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


class ContentTypes:
    """Records the content type of every answer to a POST, by JSON-RPC method."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, response: httpx2.Response) -> None:
        if response.request.method == "POST":
            method = json.loads(response.request.content).get("method", "(reply)")
            self.seen.append((method, response.headers.get("content-type", "")))

    def of(self, method: str) -> list[str]:
        return [kind for m, kind in self.seen if m == method]


@asynccontextmanager
async def _client(url: str, types: ContentTypes | None = None, **options: Any) -> AsyncIterator[Client]:
    """The SDK's client in the handshake era; with `types`, what each answer's content type was."""
    hooks: dict[str, list[Callable[..., Any]]] = {"response": [types]} if types else {}
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False, event_hooks=hooks) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy", **options) as client,
    ):
        yield client


@asynccontextmanager
async def _raw_session(url: str) -> AsyncIterator[tuple[httpx2.AsyncClient, dict[str, str]]]:
    """An initialized session spoken to by hand; yields the client and the headers each request needs."""
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http:
        opened = await http.post(url, json=INITIALIZE, headers=ACCEPT)
        assert opened.status_code == 200, opened.text
        headers = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=note, headers=headers)).status_code == 202
        yield http, headers


@asynccontextmanager
async def _sessions_only(runtime: Runtime, **options: Any) -> AsyncIterator[str]:
    """HandshakeSessions alone on a loopback socket, with the given limits; yields its URL."""
    server, _ = build_server(runtime)
    sessions = HandshakeSessions(server, security=None, **options)
    async with sessions.run(), serving(sessions, lifespan="off") as url:
        yield url


async def test_a_call_that_streams_nothing_is_answered_as_one_json_body(runtime: Runtime) -> None:
    types = ContentTypes()
    with anyio.fail_after(60):
        async with _served(runtime) as url, _client(url, types) as client:
            tags = await client.call_tool("retrieve-account-tags", {})
            await client.list_tools()
    assert not tags.is_error, text_of(tags)
    assert types.of("initialize") == ["application/json"]
    assert types.of("tools/call") == ["application/json"]
    assert set(types.of("tools/list")) == {"application/json"}


async def test_a_call_that_asks_the_person_streams_the_question_and_then_the_result(runtime: Runtime) -> None:
    types = ContentTypes()
    person = Person("accept")
    with anyio.fail_after(60):
        async with (
            _served(runtime) as url,
            _client(url, types, elicitation_callback=person) as client,
        ):
            removal = await client.call_tool(
                "unassign-tag", {"email": "henry.jones.1@example.com", "tag_name": "Customer"}
            )
    assert not removal.is_error, text_of(removal)
    assert len(person.asked) == 1
    assert types.of("tools/call") == ["text/event-stream"]
    assert types.of("(reply)") == ["application/json"]  # the person's answer, acknowledged with 202


async def test_progress_and_log_records_still_reach_a_2025_client_over_http(
    runtime: Runtime, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    email = samples["lead_with_transactions"]["email"]
    heard = Heard()
    with anyio.fail_after(60):
        async with _served(runtime) as url, _client(url, logging_callback=heard.log) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging/setLevel is 2025-only
                await client.set_logging_level("warning")
            _flaky_read(sandbox)
            retried = await client.call_tool("get-lead", {"email": email}, progress_callback=heard.progress)
    assert not retried.is_error, text_of(retried)
    assert heard.steps == [1, 2]
    assert [log.level for log in heard.logs] == ["warning", "warning"]


async def test_a_subscribed_2025_client_hears_of_changes_on_its_standalone_stream(runtime: Runtime) -> None:
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    with anyio.fail_after(60):
        async with _served(runtime) as url, _client(url, message_handler=on_message) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe is 2025-only
                await client.subscribe_resource(AUDIT_URI)
            await client.call_tool("create-lead", {"email": "watched@example.com"})
            while not updated:
                await anyio.sleep(0.01)
    assert updated == [AUDIT_URI]


async def test_requests_outside_a_live_session_are_refused_with_the_status_that_says_why(runtime: Runtime) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with anyio.fail_after(60):
        async with _served(runtime) as url, _raw_session(url) as (http, headers):
            live = await http.post(url, json=ping, headers=headers)
            missing = await http.post(url, json=ping, headers=ACCEPT)
            unknown = await http.post(url, json=ping, headers={**headers, "mcp-session-id": "0" * 32})
            json_only = await http.post(url, json=ping, headers={**headers, "Accept": "application/json"})
            garbled = await http.post(
                url, content=b"{not json", headers={**headers, "content-type": "application/json"}
            )
            batch = await http.post(url, json=[ping, ping], headers=headers)
            ended = await http.delete(url, headers=headers)
            after = await http.post(url, json=ping, headers=headers)
    assert (live.status_code, live.headers["content-type"]) == (200, "application/json")
    assert live.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert live.headers["mcp-session-id"] == headers["mcp-session-id"]
    assert missing.status_code == 400 and "Missing session ID" in missing.text
    assert unknown.status_code == 404
    assert json_only.status_code == 406 and "text/event-stream" in json_only.text
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == -32700
    assert batch.status_code == 400 and "one JSON-RPC message per request" in batch.json()["error"]["message"]
    assert ended.status_code == 200
    assert after.status_code == 404


async def test_a_session_has_one_standalone_stream_at_a_time(runtime: Runtime) -> None:
    with anyio.fail_after(60):
        async with _served(runtime) as url, _raw_session(url) as (http, headers):
            async with http.stream("GET", url, headers={**headers, "Accept": "text/event-stream"}) as first:
                second = await http.get(url, headers={**headers, "Accept": "text/event-stream"})
            assert first.status_code == 200 and first.headers["content-type"] == "text/event-stream"
            third = await http.get(url, headers={**headers, "Accept": "application/json"})
    assert second.status_code == 409
    assert third.status_code == 406


async def test_a_call_cancelled_while_the_person_decides_ends_its_stream_and_runs_nothing(
    runtime: Runtime, sandbox: Sandbox
) -> None:
    email = "henry.jones.1@example.com"
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "unassign-tag", "arguments": {"email": email, "tag_name": "Customer"}},
    }
    client = {"name": "raw", "version": "0"}
    params = {"protocolVersion": VERSION, "capabilities": {"elicitation": {"form": {}}}, "clientInfo": client}
    capable = {**INITIALIZE, "params": params}
    events: list[dict[str, Any]] = []
    with anyio.fail_after(60):
        async with _served(runtime) as url, httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http:
            opened = await http.post(url, json=capable, headers=ACCEPT)
            headers = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            async with http.stream("POST", url, json=call, headers=headers) as stream:
                assert stream.headers["content-type"] == "text/event-stream", (await stream.aread()).decode()
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    events.append(json.loads(line.removeprefix("data: ")))
                    if events[-1].get("method") == "elicitation/create":
                        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
                        assert (await http.post(url, json=cancel, headers=headers)).status_code == 202
    assert [e.get("method") for e in events] == ["elicitation/create", "notifications/cancelled", None]
    assert events[-1]["id"] == 7 and events[-1]["error"]["code"] == -32800
    assert not ran(sandbox.requests, BY_KEY["unassign-tag"].id)


async def test_a_session_with_nothing_in_flight_ends_after_the_idle_timeout(runtime: Runtime) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with anyio.fail_after(60):
        async with _sessions_only(runtime, idle_timeout=0.3) as url, _raw_session(url) as (http, headers):
            assert (await http.post(url, json=ping, headers=headers)).status_code == 200
            await anyio.sleep(1)
            gone = await http.post(url, json=ping, headers=headers)
    assert gone.status_code == 404


async def test_no_session_opens_beyond_the_limit_until_one_ends(runtime: Runtime) -> None:
    with anyio.fail_after(60):
        async with _sessions_only(runtime, max_sessions=1) as url, _raw_session(url) as (http, headers):
            refused = await http.post(url, json=INITIALIZE, headers=ACCEPT)
            await http.delete(url, headers=headers)
            admitted = await http.post(url, json=INITIALIZE, headers=ACCEPT)
    assert refused.status_code == 503
    assert admitted.status_code == 200


async def test_an_initialize_that_fails_leaves_no_session_behind(runtime: Runtime) -> None:
    malformed = {**INITIALIZE, "params": {"protocolVersion": VERSION, "capabilities": {}}}  # no clientInfo
    with anyio.fail_after(60):
        async with _served(runtime) as url, httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http:
            refused = await http.post(url, json=malformed, headers=ACCEPT)
            session = refused.headers.get("mcp-session-id", "")
            ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            after = await http.post(url, json=ping, headers={**ACCEPT, "mcp-session-id": session})
    assert "error" in refused.json()
    assert after.status_code == 404


async def test_a_write_running_when_its_session_is_ended_still_finishes_and_is_recorded(
    runtime: Runtime, sandbox: Sandbox
) -> None:
    """The client's DELETE must not cancel a write mid-flight: it ran, so its answer and audit row say so."""
    sandbox.faults.rules = [FaultRule(route=run_rule("act", BY_KEY["create-lead"].id), latency_ms=500)]
    call = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "create-lead", "arguments": {"email": "ended.mid.write@example.com"}},
    }
    with anyio.fail_after(60):
        async with _served(runtime) as url, _raw_session(url) as (http, headers):
            answers: list[httpx2.Response] = []
            async with anyio.create_task_group() as group:

                async def write() -> None:
                    answers.append(await http.post(url, json=call, headers=headers))

                group.start_soon(write)
                while not ran(sandbox.requests, BY_KEY["create-lead"].id):
                    await anyio.sleep(0.01)
                ended = await http.delete(url, headers=headers)
            after = await http.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "ping"}, headers=headers)
    (answer,) = answers
    assert ended.status_code == 200 and after.status_code == 404
    assert answer.status_code == 200 and answer.json()["result"]["isError"] is False, answer.text
    (row,) = runtime.audit.rows(tool="create-lead")
    assert row.outcome == "success", row


async def test_a_session_ended_while_the_person_is_asked_ends_the_call_at_once_and_runs_nothing(
    runtime: Runtime, sandbox: Sandbox
) -> None:
    """After its DELETE the client cannot answer the question: the call must not wait out the confirmation."""
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "unassign-tag", "arguments": {"email": "henry.jones.1@example.com", "tag_name": "Customer"}},
    }
    client = {"name": "raw", "version": "0"}
    params = {"protocolVersion": VERSION, "capabilities": {"elicitation": {"form": {}}}, "clientInfo": client}
    events: list[dict[str, Any]] = []
    with anyio.fail_after(60):
        async with _served(runtime) as url, httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http:
            opened = await http.post(url, json={**INITIALIZE, "params": params}, headers=ACCEPT)
            headers = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            async with http.stream("POST", url, json=call, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))
                        if events[-1].get("method") == "elicitation/create":
                            assert (await http.delete(url, headers=headers)).status_code == 200
    assert [e.get("method") for e in events] == ["elicitation/create", None]
    assert events[-1]["id"] == 7 and events[-1]["result"]["isError"] is True, events[-1]
    assert not ran(sandbox.requests, BY_KEY["unassign-tag"].id)


_CALLER: ContextVar[str] = ContextVar("caller", default="nobody")


async def test_each_request_is_handled_in_the_context_its_own_http_request_set() -> None:
    """What middleware sets for a request (as sign-in sets the caller) is what that request's handler sees."""
    server: Server[Any] = Server("context")

    async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams) -> ListToolsResult:
        return ListToolsResult(tools=[Tool(name=_CALLER.get(), input_schema={"type": "object"})])

    server.add_request_handler("tools/list", PaginatedRequestParams, list_tools)
    sessions = HandshakeSessions(server, security=None)

    async def naming_the_caller(scope: Scope, receive: Receive, send: Send) -> None:
        token = _CALLER.set(dict(scope["headers"]).get(b"x-caller", b"").decode())
        try:
            await sessions(scope, receive, send)
        finally:
            _CALLER.reset(token)

    with anyio.fail_after(60):
        async with (
            sessions.run(),
            serving(naming_the_caller, lifespan="off") as url,
            httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http,
        ):
            opened = await http.post(url, json=INITIALIZE, headers={**ACCEPT, "x-caller": "opener"})
            session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            listed = await http.post(url, json=listing, headers={**ACCEPT, **session, "x-caller": "lister"})
    assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["lister"]


async def test_a_client_that_stops_reading_its_stream_holds_up_no_other_session(runtime: Runtime) -> None:
    """A change announced to every watching session is dropped for one whose stream is full, not waited for."""
    server, _ = build_server(runtime)
    sessions = HandshakeSessions(server, security=None)
    stalled = anyio.Event()

    async def one_client_stops_reading(scope: Scope, receive: Receive, send: Send) -> None:
        async def never_delivered(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                stalled.set()
                await anyio.sleep_forever()
            await send(message)

        await sessions(scope, receive, never_delivered if scope["method"] == "GET" else send)

    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": AUDIT_URI}}
    answers: list[httpx2.Response] = []
    with anyio.fail_after(60):
        async with (
            sessions.run(),
            serving(one_client_stops_reading, lifespan="off") as url,
            _raw_session(url) as (watcher, watching),
            _raw_session(url) as (writer, writing),
        ):
            assert (await watcher.post(url, json=subscribe, headers=watching)).status_code == 200
            async with watcher.stream("GET", url, headers={**watching, "Accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                for number in range(24):  # more changes than the watcher's stream holds
                    call = {
                        "jsonrpc": "2.0",
                        "id": 10 + number,
                        "method": "tools/call",
                        "params": {"name": "create-lead", "arguments": {"email": f"busy.{number}@example.com"}},
                    }
                    answers.append(await writer.post(url, json=call, headers=writing))
    assert stalled.is_set()
    assert [answer.status_code for answer in answers] == [200] * 24
    assert not any(answer.json()["result"]["isError"] for answer in answers)
