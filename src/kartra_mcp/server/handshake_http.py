"""Streamable HTTP for the handshake era (2025-11-25): sessions whose requests are answered as plain
JSON unless something streams.

The SDK's transport for this era answers every request with an SSE stream, and the stream's
machinery (a task group of four per response) costs about as much CPU as the rest of the call. The
spec lets a server choose per request (JSON or SSE; a client MUST accept both), so here a request is
answered as one JSON body when the first message back is its response, and turns into an SSE stream
only when something comes first: progress, a log record, or a question for the person mid-call.

Each session runs the SDK's own serve loop over a pair of memory streams; only the wire is ours.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any, Final, Self
from uuid import uuid4

import anyio
import pydantic_core
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_loop
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, REQUEST_CANCELLED, check_accept_headers
from mcp.server.streamable_http_manager import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE_TIMEOUT
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp.types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

# While a stream waits (a person deciding, a slow Kartra), a comment line now and then keeps proxies
# from closing it as idle.
PING_SECONDS: Final = 15.0
# Messages for one request queued before the session's router waits for its reader.
_BUFFER: Final = 16
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
]
_PING: Final = b": ping\n\n"

Wire = MemoryObjectSendStream[JSONRPCMessage]
# A message for the serve loop, with the context of the HTTP request that brought it.
_Sent = tuple[contextvars.Context, SessionMessage | Exception]


class _WithSendersContext:
    """The serve loop's end of a session's input, which hands it each message's sender's context.

    The SDK's dispatcher runs a message's handler in the stream's `last_context` when it has one, so
    what the HTTP request's middleware set (the signed-in caller, tracing) is what that request's
    handler sees, not what was set when the session opened.
    """

    def __init__(self, stream: MemoryObjectReceiveStream[_Sent]) -> None:
        self._stream = stream
        self.last_context: contextvars.Context | None = None

    async def receive(self) -> SessionMessage | Exception:
        self.last_context, item = await self._stream.receive()
        return item

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(eq=False)
class _Session:
    """One client's session: what reaches its serve loop, and where its answers go."""

    id: str
    inbound: MemoryObjectSendStream[_Sent]
    idle: anyio.CancelScope
    # Who opened it (hosted: the signed-in person), and so the only one who may use it.
    owner: AuthorizationContext | None = None
    requests: dict[str, Wire] = field(default_factory=dict)
    standalone: Wire | None = None
    in_flight: int = 0
    closed: bool = False
    # Notifications are being dropped because the client is not reading its standalone stream.
    dropping: bool = False
    # Questions put to the client (a person asked mid-call) it has not answered, by id: once it ends the
    # session it never will, so they are answered for it then (see `_delete`).
    asked: dict[str, RequestId] = field(default_factory=dict)


class _Outbox:
    """The serve loop's output: each message goes straight to the request it belongs to, or to the GET stream.

    Routing in the sender, rather than through a stream and a task of its own, saves each answer a
    hop between tasks.
    """

    def __init__(self, session: _Session) -> None:
        self._session = session

    async def send(self, item: SessionMessage, /) -> None:
        session, message = self._session, item.message
        if isinstance(message, JSONRPCRequest):
            if session.closed:  # the client ended the session and will answer nothing: the asker hears so now
                raise anyio.ClosedResourceError
            session.asked[str(message.id)] = message.id
        key: RequestId | None = None
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            key = message.id
        elif isinstance(item.metadata, ServerMessageMetadata):
            key = item.metadata.related_request_id
        wire = session.requests.get(str(key)) if key is not None else session.standalone
        if wire is None:
            logger.debug("Session %s: no open stream for a %s; dropped", session.id, type(message).__name__)
            return
        try:
            if key is not None:
                await wire.send(message)  # a request's own messages wait for its reader, in order
            else:
                # A change announced to every session must not wait on one whose client stopped reading:
                # what its full stream cannot take is dropped (the client can list again at any time).
                wire.send_nowait(message)
        except anyio.WouldBlock:
            if not session.dropping:
                logger.warning("Session %s is not reading its stream: notifications for it are dropped", session.id)
            session.dropping = True
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("Session %s: the stream closed before a message reached it", session.id)
        else:
            session.dropping = False

    async def aclose(self) -> None:
        """Nothing to close: the streams written to belong to the requests."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class HandshakeSessions:
    """The ASGI app for handshake-era requests at the MCP path (POST, GET and DELETE).

    Host and Origin are checked as the SDK's transport checks them; sessions end after
    `idle_timeout` seconds with nothing in flight, and at most `max_sessions` are open at once.
    """

    def __init__(
        self,
        server: Server[Any],
        *,
        security: TransportSecuritySettings | None,
        idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self._server = server
        self._security = TransportSecurityMiddleware(security)
        self._idle_timeout = idle_timeout
        self._max_sessions = max_sessions
        self._sessions: dict[str, _Session] = {}
        self._group: TaskGroup | None = None
        self._lifespan_state: Any = None
        self._init_options: InitializationOptions | None = None
        self._stopping = False

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Serve sessions until the block ends; every session ends with it."""
        async with self._server.lifespan(self._server) as state, anyio.create_task_group() as group:
            self._lifespan_state, self._group = state, group
            # What `initialize` answers is fixed once the server is built: worked out once, not per session.
            self._init_options = self._server.create_initialization_options()
            try:
                yield
            finally:
                group.cancel_scope.cancel()
                self._group = None

    def stop_streaming(self) -> None:
        """The server is stopping: end every standalone stream, which would otherwise hold the shutdown
        forever, and open no new ones. Requests in flight finish; their sessions end with `run()`."""
        self._stopping = True
        for session in self._sessions.values():
            if session.standalone is not None:
                session.standalone.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        refusal = await self._security.validate_request(request, is_post=request.method == "POST")
        if refusal is not None:
            await refusal(scope, receive, send)
        elif request.method == "POST":
            await self._post(request, send)
        elif request.method == "GET":
            await self._get(request, send)
        elif request.method == "DELETE":
            await self._delete(request, send)
        else:
            await _error("Method Not Allowed", HTTPStatus.METHOD_NOT_ALLOWED, headers={"Allow": "GET, POST, DELETE"})(
                scope, receive, send
            )

    async def _post(self, request: Request, send: Send) -> None:
        has_json, has_sse = check_accept_headers(request)
        if not (has_json and has_sse):
            refusal = "Not Acceptable: Client must accept both application/json and text/event-stream"
            await _error(refusal, HTTPStatus.NOT_ACCEPTABLE)(request.scope, request.receive, send)
            return
        try:
            raw = pydantic_core.from_json(await request.body())
            if isinstance(raw, list):
                refusal = "Send one JSON-RPC message per request: MCP has no batches since 2025-06-18"
                await _error(refusal, HTTPStatus.BAD_REQUEST)(request.scope, request.receive, send)
                return
            message = jsonrpc_message_adapter.validate_python(raw)
        except ValidationError as exc:
            response = _error(f"Validation error: {exc}", HTTPStatus.BAD_REQUEST, INVALID_PARAMS)
            await response(request.scope, request.receive, send)
            return
        except ValueError as exc:
            await _error(f"Parse error: {exc}", HTTPStatus.BAD_REQUEST, PARSE_ERROR)(
                request.scope, request.receive, send
            )
            return
        if isinstance(message, JSONRPCRequest) and message.method == "initialize" and _session_id(request) is None:
            await self._open(message, request, send)
            return
        session = await self._session(request, send)
        if session is None:
            return
        with self._busy(session):
            if isinstance(message, JSONRPCRequest):
                await self._exchange(session, message, request, send)
                return
            await _headers_only(HTTPStatus.ACCEPTED, session)(request.scope, request.receive, send)
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                session.asked.pop(str(message.id), None)
            await self._deliver(
                session, SessionMessage(message, metadata=ServerMessageMetadata(request_context=request))
            )

    async def _open(self, message: JSONRPCRequest, request: Request, send: Send) -> None:
        """A new session for an `initialize` request, kept only if that request is answered."""
        if self._group is None:
            raise RuntimeError("HandshakeSessions.run() is not active")
        if self._stopping:
            await _error("The server is stopping", HTTPStatus.SERVICE_UNAVAILABLE)(request.scope, request.receive, send)
            return
        if len(self._sessions) >= self._max_sessions:
            logger.warning("Refusing to open a new session: %d sessions are already open", len(self._sessions))
            await _error("Too many open sessions", HTTPStatus.SERVICE_UNAVAILABLE, INTERNAL_ERROR)(
                request.scope, request.receive, send
            )
            return
        inbound, from_client = anyio.create_memory_object_stream[_Sent](0)
        session = _Session(uuid4().hex, inbound, anyio.CancelScope(deadline=anyio.current_time() + self._idle_timeout))
        session.owner = _owner(request.scope)
        self._sessions[session.id] = session
        self._group.start_soon(self._serve, session, from_client)
        answer: JSONRPCMessage | None = None
        try:
            with self._busy(session):
                answer = await self._exchange(session, message, request, send)
        finally:
            if not isinstance(answer, JSONRPCResponse):
                self._end(session)  # a failed initialize establishes nothing

    async def _serve(self, session: _Session, from_client: MemoryObjectReceiveStream[_Sent]) -> None:
        """One session's serve loop, until the client ends it, it idles out, or we stop."""
        try:
            with session.idle:
                await serve_loop(
                    self._server,
                    _WithSendersContext(from_client),
                    _Outbox(session),
                    lifespan_state=self._lifespan_state,
                    session_id=session.id,
                    init_options=self._init_options,
                )
            if session.idle.cancelled_caught:
                logger.info("Session %s ended after %.0f s idle", session.id, self._idle_timeout)
        except Exception:
            logger.exception("Session %s crashed", session.id)
        finally:
            from_client.close()  # also when cancelled before the loop began: no sender waits on it forever
            self._end(session)

    async def _exchange(
        self, session: _Session, message: JSONRPCRequest, request: Request, send: Send
    ) -> JSONRPCMessage | None:
        """Send one request to the session and answer it: JSON if its response comes first, else SSE.

        Returns the response written, if one was.
        """
        key = str(message.id)
        if key in session.requests:
            response = _error(f"Request id {key} is already in flight", HTTPStatus.CONFLICT, INVALID_REQUEST)
            await response(request.scope, request.receive, send)
            return None
        wire, replies = anyio.create_memory_object_stream[JSONRPCMessage](_BUFFER)
        session.requests[key] = wire
        metadata = ServerMessageMetadata(
            request_context=request,
            on_request_unanswered=partial(self._unanswered, session, message.id),
            can_send_request=True,
        )
        try:
            async with replies:
                if not await self._deliver(session, SessionMessage(message, metadata=metadata)):
                    await _ended(request, send)
                    return None
                try:
                    first = await replies.receive()
                except anyio.EndOfStream:
                    await _ended(request, send)
                    return None
                if isinstance(first, JSONRPCResponse | JSONRPCError):
                    await _json(first, session)(request.scope, request.receive, send)
                    return first
                await _start_sse(send, session)
                await _event(send, first)
                return await _stream_until_answered(replies, send)
        finally:
            if session.requests.get(key) is wire:
                del session.requests[key]
            wire.close()
            if session.closed and not session.requests:
                session.inbound.close()  # the last request of an ended session is answered: its loop may end

    async def _unanswered(self, session: _Session, request_id: RequestId) -> None:
        """A request that settled without a response (cancelled) still ends its stream, after what it sent."""
        error = JSONRPCError(
            jsonrpc="2.0", id=request_id, error=ErrorData(code=REQUEST_CANCELLED, message="Request cancelled")
        )
        await _Outbox(session).send(SessionMessage(error))

    async def _get(self, request: Request, send: Send) -> None:
        """The session's one standalone stream: list changes, updates and questions no request owns."""
        if not check_accept_headers(request)[1]:
            message = "Not Acceptable: Client must accept text/event-stream"
            await _error(message, HTTPStatus.NOT_ACCEPTABLE)(request.scope, request.receive, send)
            return
        session = await self._session(request, send)
        if session is None:
            return
        if self._stopping:
            await _error("The server is stopping", HTTPStatus.SERVICE_UNAVAILABLE)(request.scope, request.receive, send)
            return
        if session.standalone is not None:
            response = _error("Conflict: Only one SSE stream is allowed per session", HTTPStatus.CONFLICT)
            await response(request.scope, request.receive, send)
            return
        wire, messages = anyio.create_memory_object_stream[JSONRPCMessage](_BUFFER)
        session.standalone = wire
        try:
            with self._busy(session):
                await _start_sse(send, session)
                async with anyio.create_task_group() as group, messages:
                    group.start_soon(_cancel_on_disconnect, request.receive, group.cancel_scope)
                    await _stream_until_answered(messages, send, final=False)
                    group.cancel_scope.cancel()
        finally:
            if session.standalone is wire:
                session.standalone = None
            wire.close()

    async def _delete(self, request: Request, send: Send) -> None:
        session = await self._session(request, send)
        if session is None:
            return
        self._end(session, drain=True)
        # A request still running may be waiting on a question to the client; it would wait out its
        # confirmation's life for an answer that cannot come. Nothing was sent for it: it ends declined.
        asked, session.asked = session.asked, {}
        for request_id in asked.values():
            gone = ErrorData(code=CONNECTION_CLOSED, message="The client ended the session")
            await self._deliver(session, SessionMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=gone)))
        await _headers_only(HTTPStatus.OK, session)(request.scope, request.receive, send)

    async def _session(self, request: Request, send: Send) -> _Session | None:
        """The request's session, or None once a 400/404 has been written."""
        session_id = _session_id(request)
        if session_id is None:
            await _error("Bad Request: Missing session ID", HTTPStatus.BAD_REQUEST)(
                request.scope, request.receive, send
            )
            return None
        session = self._sessions.get(session_id)
        if session is not None and session.owner != _owner(request.scope):
            # Someone else's session answers exactly as one that does not exist.
            logger.warning("Refused a request for session %s with another credential than opened it", session_id[:64])
            session = None
        if session is None or session.closed:
            await _error("Session not found", HTTPStatus.NOT_FOUND)(request.scope, request.receive, send)
            return None
        return session

    @contextmanager
    def _busy(self, session: _Session) -> Iterator[None]:
        """While a request is served the session cannot idle out; the countdown restarts after the last."""
        session.in_flight += 1
        session.idle.deadline = math.inf
        try:
            yield
        finally:
            session.in_flight -= 1
            if not session.in_flight:
                session.idle.deadline = anyio.current_time() + self._idle_timeout

    async def _deliver(self, session: _Session, item: SessionMessage) -> bool:
        try:
            await session.inbound.send((contextvars.copy_context(), item))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def _end(self, session: _Session, *, drain: bool = False) -> None:
        """Forget the session and close its input: its serve loop ends, and open requests see the end.

        With `drain` (the client ended it), requests already running finish first and are answered:
        ending the loop under them would cancel a write mid-flight and leave its outcome unknown.
        """
        session.closed = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        if session.standalone is not None:
            session.standalone.close()
        if drain and session.requests:
            return  # `_exchange` closes the input when the last of them is answered
        session.inbound.close()
        for wire in session.requests.values():
            wire.close()


async def _stream_until_answered(
    messages: MemoryObjectReceiveStream[JSONRPCMessage], send: Send, *, final: bool = True
) -> JSONRPCMessage | None:
    """Write messages as SSE events, pinging while none come, until the response (or, for the GET
    stream, until the session ends). Returns the response written, if one was."""
    while True:
        with anyio.move_on_after(PING_SECONDS):
            try:
                message = await messages.receive()
            except anyio.EndOfStream:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return None
            await _event(send, message)
            if final and isinstance(message, JSONRPCResponse | JSONRPCError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return message
            continue
        await send({"type": "http.response.body", "body": _PING, "more_body": True})


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _start_sse(send: Send, session: _Session) -> None:
    headers = [*_SSE_HEADERS, (MCP_SESSION_ID_HEADER.encode(), session.id.encode())]
    await send({"type": "http.response.start", "status": HTTPStatus.OK, "headers": headers})


async def _event(send: Send, message: JSONRPCMessage) -> None:
    data = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
    await send({"type": "http.response.body", "body": b"event: message\ndata: " + data + b"\n\n", "more_body": True})


async def _ended(request: Request, send: Send) -> None:
    response = _error("Session terminated before the request completed", HTTPStatus.NOT_FOUND)
    await response(request.scope, request.receive, send)


def _owner(scope: Scope) -> AuthorizationContext | None:
    """The principal a request was authenticated as (hosted mode), else None."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def _session_id(request: Request) -> str | None:
    return request.headers.get(MCP_SESSION_ID_HEADER)


def _json(message: JSONRPCMessage, session: _Session) -> Response:
    return Response(
        message.model_dump_json(by_alias=True, exclude_unset=True),
        media_type="application/json",
        headers={MCP_SESSION_ID_HEADER: session.id},
    )


def _headers_only(status: HTTPStatus, session: _Session) -> Response:
    return Response(status_code=status, media_type="application/json", headers={MCP_SESSION_ID_HEADER: session.id})


def _error(
    message: str, status: HTTPStatus, code: int = INVALID_REQUEST, *, headers: dict[str, str] | None = None
) -> Response:
    """A JSON-RPC error with no id, as the SDK's transport writes one."""
    body = JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=code, message=message))
    return Response(
        body.model_dump_json(by_alias=True, exclude_unset=True),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
