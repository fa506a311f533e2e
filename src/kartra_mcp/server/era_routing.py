"""Each request at the MCP path to the wire that serves its protocol era most cheaply.

The handshake era (2025-11-25) goes to our own sessions (`handshake_http`), which answer JSON unless
a request streams. The SDK fixes JSON-or-SSE per session manager for the stateless era (2026-07-28):
a request there can only stream progress or log records, and only when its `_meta` asks for them;
the rest are one result, which a JSON-response manager writes without the SSE machinery (about a
sixth less CPU per call), and the SDK's own app takes the others.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    RequestBodyLimitMiddleware,
    TransportSecuritySettings,
)
from mcp.types import LOG_LEVEL_META_KEY
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kartra_mcp.server.handshake_http import HandshakeSessions

_VERSION_HEADER = b"mcp-protocol-version"
_HANDSHAKE = frozenset({None, *HANDSHAKE_PROTOCOL_VERSIONS})
# A request asking for anything streamed back names one of these; they never occur otherwise.
# Matching the raw bytes can only err towards SSE (a string argument that happens to contain one).
_STREAMED = (b'"progressToken"', f'"{LOG_LEVEL_META_KEY}"'.encode())


def wants_stream(body: bytes) -> bool:
    """Whether a stateless-era request's body asks for progress or log records while it runs."""
    return any(key in body for key in _STREAMED)


class EraRouter:
    """ASGI middleware over the SDK's app: the handshake era goes to our sessions, and POSTs of the
    stateless era that want no stream to a JSON manager.

    Everything else (other paths, stateless-era GET/DELETE, oversized bodies, requests asking for
    progress or logs) reaches `app` untouched. All three check the same Host/Origin rules and body limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        server: Server[Any],
        *,
        path: str,
        security: TransportSecuritySettings | None,
        guard: Callable[[ASGIApp], ASGIApp] = lambda inner: inner,
    ) -> None:
        """`guard` wraps what is routed here around `app` (hosted: the same sign-in `app` asks for), before
        anything reads a body."""
        self.app = app
        self._path = path
        self._json = StreamableHTTPSessionManager(app=server, json_response=True, security_settings=security)
        self._sessions = HandshakeSessions(server, security=security)
        self._handshake = guard(RequestBodyLimitMiddleware(self._sessions, DEFAULT_MAX_REQUEST_BODY_SIZE))
        self._stateless = guard(self._stateless_post)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == self._path:
            if self._version(scope) in _HANDSHAKE:
                await self._handshake(scope, receive, send)
                return
            if scope["method"] == "POST":
                await self._stateless(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _stateless_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body to see whether it wants a stream: JSON manager if not, the SDK's app if so."""
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > DEFAULT_MAX_REQUEST_BODY_SIZE or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        complete = chunks[-1]["type"] == "http.request" and not chunks[-1].get("more_body", False)
        replay = _replaying(chunks, receive)
        if complete and size <= DEFAULT_MAX_REQUEST_BODY_SIZE and not wants_stream(body):
            await self._json.handle_request(scope, replay, send)
        else:
            await self.app(scope, replay, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run both wires for the app's lifetime, and stop them before shutdown is reported complete:
        the server stops waiting for the app once it hears that."""
        async with AsyncExitStack() as running:
            await running.enter_async_context(self._json.run())
            await running.enter_async_context(self._sessions.run())

            async def stop_first(message: Message) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    await running.aclose()
                await send(message)

            await self.app(scope, receive, stop_first)

    def stop_streaming(self) -> None:
        """The server is stopping: end the streams that would hold it open (see `HandshakeSessions`)."""
        self._sessions.stop_streaming()

    @staticmethod
    def _version(scope: Scope) -> str | None:
        """The request's protocol version header; a request without one is of the handshake era."""
        version = next((v for k, v in scope["headers"] if k == _VERSION_HEADER), None)
        return None if version is None else version.decode("latin-1")


def _replaying(chunks: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands back what was already read."""
    pending = list(chunks)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
