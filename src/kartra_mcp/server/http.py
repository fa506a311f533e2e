"""Streamable HTTP at `/mcp`, behind a bearer token when one is set."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from types import FrameType

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kartra_mcp.errors import ConfigError
from kartra_mcp.server.app import KartraServer
from kartra_mcp.server.era_routing import EraRouter
from kartra_mcp.tools.approval.page import PREFIX as APPROVALS_PATH, ApprovalPages

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/healthz"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Anything but loopback needs a token: an open port must not hand out a Kartra account."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"Serving HTTP on {host} (not loopback) requires KARTRA_MCP_HTTP_TOKEN: set it to a long random "
            "secret, and have clients send it as 'Authorization: Bearer <token>'."
        )


def _loopback_only(host: str) -> TransportSecuritySettings | None:
    """On loopback, accept only local Host and Origin headers, whatever loopback address is bound.

    A web page the person visits must not reach a local server by rebinding DNS; the SDK does this
    itself only for three spellings of loopback.
    """
    if not is_loopback(host):
        return None  # beyond loopback a bearer token is required instead
    bound = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    hosts = sorted({"127.0.0.1", "localhost", "[::1]", bound})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in hosts],
        allowed_origins=[f"http://{h}:*" for h in hosts],
    )


class BearerGuard:
    """ASGI middleware: every request but the health check and the approval pages must carry the bearer token.

    The approval pages answer to the approver credential instead: the MCP bearer (which a bot holds) must
    not be what approves its own calls.
    """

    def __init__(self, app: ASGIApp, token: str, *, exempt: frozenset[str] = frozenset({HEALTH_PATH})) -> None:
        self.app = app
        self._token = token.encode()
        self._exempt = exempt

    def _is_exempt(self, path: str) -> bool:
        return path in self._exempt or path == APPROVALS_PATH or path.startswith(APPROVALS_PATH + "/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._is_exempt(scope["path"]):
            header = dict(scope.get("headers") or ()).get(b"authorization", b"")
            scheme, _, presented = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(presented.strip(), self._token):
                body = json.dumps(
                    {
                        "error": "invalid_token",
                        "error_description": "Send Authorization: Bearer <KARTRA_MCP_HTTP_TOKEN>",
                    }
                )
                response = Response(
                    body,
                    status_code=401,
                    media_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="kartra-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def http_app(server: KartraServer, *, host: str, token: str | None, pages: ApprovalPages | None = None) -> ASGIApp:
    """The ASGI app: MCP at /mcp (stateful, so legacy clients can be asked to confirm), /healthz, and,
    with an approver credential, the approval inbox at /approvals."""
    check_binding(host, token)
    return _guarded(_routed(server, host=host, pages=pages), token)


def _routed(server: KartraServer, *, host: str, pages: ApprovalPages | None) -> EraRouter:
    security = _loopback_only(host)
    routes: list[Route] = [Route(HEALTH_PATH, _health)]
    if pages is not None:
        routes += pages.routes()
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        host=host,
        transport_security=security,
        custom_starlette_routes=routes,
    )
    return EraRouter(app, server, path=MCP_PATH, security=security)


def _guarded(app: ASGIApp, token: str | None) -> ASGIApp:
    return BearerGuard(app, token) if token else app


class StoppingServer(uvicorn.Server):
    """uvicorn that, told to stop, first ends the streams that would otherwise keep it waiting."""

    def __init__(self, config: uvicorn.Config, router: EraRouter) -> None:
        super().__init__(config)
        self._router = router

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._router.stop_streaming()
        super().handle_exit(sig, frame)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so a taken port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Another program may be using the port: "
            "stop it, or pass another --port."
        ) from None
    return sock


async def serve_http(
    server: KartraServer, *, sock: socket.socket, host: str, token: str | None, pages: ApprovalPages | None = None
) -> None:
    """Serve on `sock` (from `listen`) until stopped; with `pages`, the approval inbox too."""
    check_binding(host, token)
    router = _routed(server, host=host, pages=pages)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _guarded(router, token), host=host, port=port, lifespan="on", log_config=None, access_log=False
    )
    logger.info(
        "MCP over streamable HTTP at http://%s:%d%s%s",
        host,
        port,
        MCP_PATH,
        " (bearer token required)" if token else "",
    )
    await StoppingServer(config, router).serve(sockets=[sock])
