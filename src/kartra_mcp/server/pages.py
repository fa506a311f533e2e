"""Serving the approval page: on loopback beside a stdio server, or under the HTTP server's own routes."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Generator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from kartra_mcp.tools.approval import Approvals
from kartra_mcp.tools.approval.page import ApprovalPages

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process it runs in (the MCP server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def loopback_app(approvals: Approvals) -> Starlette:
    """The approval page alone; only loopback Host names are answered, so DNS rebinding cannot reach it."""
    return Starlette(
        routes=ApprovalPages(approvals).routes(),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)],
    )


@contextlib.asynccontextmanager
async def serve_app_on_loopback(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 at a free port while the block runs; yields its base URL.

    The URL works from the moment it is yielded: the socket already listens, so a browser that comes
    before uvicorn has started waits in the backlog, and a stdio server need not wait for it to answer.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = _QuietServer(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True


@contextlib.asynccontextmanager
async def serve_on_loopback(approvals: Approvals) -> AsyncIterator[str]:
    """The approval page on loopback while the block runs (a stdio server's browser channel)."""
    async with serve_app_on_loopback(loopback_app(approvals)) as base:
        approvals.base_url = base
        try:
            yield base
        finally:
            approvals.base_url = None
