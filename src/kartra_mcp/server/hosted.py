"""`serve --transport http --auth membrane`: an OAuth 2.1 protected resource over per-person tokens.

Each request carries a Membrane access token (from the client's OAuth sign-in with Membrane, or a
static `Authorization: Bearer`). The SDK's resource-server pieces refuse anything else with 401 and
`WWW-Authenticate: Bearer resource_metadata=...`, and publish RFC 9728 metadata naming Membrane's
authorization server; our verifier asks Membrane whose token it is. Every tool list and call then
runs on that person's tenant's executor, with their token bound to each Membrane request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx2
import uvicorn
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.types import INVALID_REQUEST
from pydantic import AnyHttpUrl
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp

from kartra_mcp.config import Settings
from kartra_mcp.errors import ConfigError
from kartra_mcp.membrane import MembraneClient, RequestToken, RetryPolicy, person_token
from kartra_mcp.server import progress
from kartra_mcp.server.app import INSTRUCTIONS, KartraServer, serve_executors
from kartra_mcp.server.era_routing import EraRouter
from kartra_mcp.server.http import HEALTH_PATH, MCP_PATH, StoppingServer, _health, _loopback_only, is_loopback, listen
from kartra_mcp.server.runtime import load_effective_policy
from kartra_mcp.state import SharedState
from kartra_mcp.tools.audit import AuditTrail
from kartra_mcp.tools.executor import Executor
from kartra_mcp.tools.tenants import TenantDirectory, TenantRuntimes

logger = logging.getLogger(__name__)

SCOPE = "tenant"
PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource"


class MembraneTokenVerifier:
    """The SDK's `TokenVerifier`: a token is good when Membrane says whose it is."""

    def __init__(self, directory: TenantDirectory, resource: str) -> None:
        self._directory = directory
        self._resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        tenant = await self._directory.identify(token)
        if tenant is None:
            return None
        # The subject is the tenant: the SDK binds each legacy session to it, so no one else can use it.
        return AccessToken(
            token=token, client_id="membrane", scopes=[SCOPE], subject=tenant.key, resource=self._resource
        )


def _caller(ctx: ServerRequestContext[Any, Any]) -> AccessToken | None:
    """The access token of the request being handled (the HTTP request's own, then the auth context)."""
    request = ctx.request
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if isinstance(user, AuthenticatedUser):
        return user.access_token
    return get_access_token()


@dataclass
class Hosted:
    """What a hosted server holds: one Membrane client for everyone, and each tenant's pieces."""

    server: KartraServer
    directory: TenantDirectory
    tenants: TenantRuntimes
    resource: str


def build_hosted_server(
    client: MembraneClient,
    settings: Settings,
    audit: AuditTrail,
    *,
    resource: str,
    shared: SharedState | None = None,
) -> tuple[KartraServer, TenantDirectory, TenantRuntimes]:
    """`shared`: each tenant's confirmations, refund holds and cap in Redis (replicas), else in this process."""
    directory = TenantDirectory(client, ttl=settings.token_cache_ttl)
    policy = load_effective_policy(settings)
    tenants = TenantRuntimes(
        client,
        policy=policy,
        audit=audit,
        tool_mode=settings.tool_mode,
        ttl=settings.tenant_ttl,
        size=settings.max_tenants,
        state_for=shared.state_for(policy.confirmation_ttl) if shared else None,
    )

    @asynccontextmanager
    async def executor_for(ctx: ServerRequestContext[Any, Any]) -> AsyncIterator[Executor]:
        caller = _caller(ctx)
        if caller is None or not caller.subject:
            raise MCPError(code=INVALID_REQUEST, message="Sign in with Membrane: send Authorization: Bearer <token>")
        with person_token(caller.token):
            try:
                executor = await tenants.get(caller.subject)
            except ConfigError as exc:
                raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
            yield executor

    def input_schema(name: str) -> Mapping[str, Any] | None:
        caller = get_access_token()
        executor = tenants.peek(caller.subject) if caller and caller.subject else None
        spec = executor.listed(name) if executor else None
        return spec.input_schema if spec else None

    server, _ = serve_executors(executor_for, input_schema=input_schema, instructions=INSTRUCTIONS)
    progress.register(server)
    return server, directory, tenants


def public_url(settings: Settings, host: str, port: int) -> str:
    """Where clients reach this server: `KARTRA_MCP_PUBLIC_URL`, else the address it binds."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    bound = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    return f"http://{bound}:{port}"


@asynccontextmanager
async def open_hosted(
    settings: Settings,
    *,
    host: str,
    port: int,
    audit: AuditTrail,
    transport: httpx2.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    shared: SharedState | None = None,
) -> AsyncIterator[tuple[EraRouter, Hosted]]:
    """The hosted ASGI app, and what it holds; the shared Membrane client closes when the block ends."""
    resource = f"{public_url(settings, host, port)}{MCP_PATH}"
    async with MembraneClient(
        base_url=settings.membrane_api_url,
        auth=RequestToken(),
        transport=transport,
        timeout=settings.request_timeout,
        retry=retry,
    ) as client:
        server, directory, tenants = build_hosted_server(client, settings, audit, resource=resource, shared=shared)
        # AuthSettings keeps a path-less issuer without a trailing slash: RFC 8414 compares issuers exactly.
        auth = AuthSettings.model_validate(
            {
                "issuer_url": settings.membrane_api_url,
                "resource_server_url": resource,
                "required_scopes": [SCOPE],
                # Membrane's tokens are for Membrane; the verifier checks them by asking it.
                "validate_token_resource": False,
            }
        )
        assert auth.resource_server_url is not None
        # RFC 9728 §3.1 puts the metadata at the path-suffixed address; some clients ask at the root.
        suffixed = create_protected_resource_routes(
            resource_url=auth.resource_server_url, authorization_servers=[auth.issuer_url], scopes_supported=[SCOPE]
        )
        root = [Route(PROTECTED_RESOURCE_PATH, r.endpoint, methods=["GET", "OPTIONS"]) for r in suffixed[:1]]
        verifier = MembraneTokenVerifier(directory, resource)
        security = _loopback_only(host)
        app: ASGIApp = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            host=host,
            transport_security=security,
            auth=auth,
            token_verifier=verifier,
            custom_starlette_routes=[Route(HEALTH_PATH, _health), *root],
        )
        signed_in = _signed_in(verifier, build_resource_metadata_url(auth.resource_server_url))
        router = EraRouter(app, server, path=MCP_PATH, security=security, guard=signed_in)
        yield router, Hosted(server, directory, tenants, resource)


async def serve_hosted(
    settings: Settings, *, host: str, port: int, audit: AuditTrail, shared: SharedState | None = None
) -> None:
    if not settings.membrane_api_url.startswith("https://") and not _is_local_url(settings.membrane_api_url):
        raise ConfigError(
            f"MEMBRANE_API_URL={settings.membrane_api_url} is not https: people's tokens would cross the network "
            "in the clear. Use Membrane's https address."
        )
    with listen(host, port) as sock:
        async with open_hosted(settings, host=host, port=port, audit=audit, shared=shared) as (app, hosted):
            config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None, access_log=False)
            logger.info(
                "MCP over streamable HTTP at %s; people sign in with Membrane at %s",
                hosted.resource,
                settings.membrane_api_url,
            )
            await StoppingServer(config, app).serve(sockets=[sock])


def _signed_in(verifier: MembraneTokenVerifier, metadata: AnyHttpUrl) -> Callable[[ASGIApp], ASGIApp]:
    """What the SDK's app puts before its MCP endpoint, for the wires the era router sends requests to:
    the bearer token checked with Membrane, the caller known to the handlers, and a 401 naming the metadata."""

    def guard(inner: ASGIApp) -> ASGIApp:
        required = RequireAuthMiddleware(inner, [SCOPE], metadata)
        return AuthenticationMiddleware(AuthContextMiddleware(required), backend=BearerAuthBackend(verifier))

    return guard


def _is_local_url(url: str) -> bool:
    return is_loopback(urlparse(url).hostname or "")
