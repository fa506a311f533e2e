"""Several tenants behind one sandbox, and the OAuth endpoints Membrane signs people in with.

`Tenants` is an ASGI app: each tenant is a whole `Sandbox` (its own Kartra account, seeded from
its key), and a request goes to the tenant its bearer token names. Beside them it serves
Membrane's authorization server as the hosted MCP server points clients at it:
`/.well-known/oauth-authorization-server`, `/oauth/register` (dynamic client registration),
`/oauth/authorize` (authorization code with PKCE S256; a form to choose a tenant, or `tenant=`
to sign in without one), `/oauth/token` (code and refresh grants) and `/oauth/revoke`.
Access tokens are tenant tokens with an expiry, so each tenant's sandbox checks them itself.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kartra_mcp.sandbox.app import Sandbox, SandboxConfig

SCOPE = "tenant"
ACCESS_LIFETIME = 3600
CODE_LIFETIME = 300
_OAUTH_PATHS = ("/.well-known/oauth-authorization-server", "/oauth/")


def tenant_seed(tenant: str) -> int:
    """Each tenant's account is seeded from its key: the same tenant, the same account, every run."""
    return int.from_bytes(hashlib.sha256(f"tenant:{tenant}".encode()).digest()[:4], "big")


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class _Grant:
    client_id: str
    tenant: str
    redirect_uri: str = ""
    challenge: str = ""
    expires_at: float = 0.0


@dataclass
class Tenants:
    """The sandbox for a team: one `Sandbox` per tenant key, and OAuth to sign people in to them."""

    keys: Sequence[str] = ("alice", "bob")
    base_url: str = "http://sandbox.kartra-mcp.invalid"
    workspace_key: str = "sandbox-workspace"
    workspace_secret: str = "sandbox-workspace-secret-not-for-production"
    leads: int | None = None
    access_lifetime: int = ACCESS_LIFETIME
    clock: Callable[[], float] = time.time
    sandboxes: dict[str, Sandbox] = field(init=False)
    clients: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    _codes: dict[str, _Grant] = field(init=False, default_factory=dict)
    _refresh: dict[str, _Grant] = field(init=False, default_factory=dict)
    _revoked: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.sandboxes = {}
        for key in self.keys:
            config = SandboxConfig(
                workspace_key=self.workspace_key,
                workspace_secret=self.workspace_secret,
                tenant_key=key,
                seed=tenant_seed(key),
                base_url=self.base_url,
            )
            if self.leads is not None:
                config.leads = self.leads
            self.sandboxes[key] = Sandbox(config)
        self.oauth = Starlette(routes=self._routes())

    def _routes(self) -> list[Route]:
        return [
            Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"]),
            Route("/oauth/register", self.register, methods=["POST"]),
            Route("/oauth/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
        ]

    # -- tokens ------------------------------------------------------------------------------

    def mint(self, tenant: str, *, lifetime: int | None = None) -> str:
        """An access token for `tenant` that expires after `lifetime` seconds (negative: already expired)."""
        now = int(self.clock())
        claims = {
            "id": tenant,
            "iss": self.workspace_key,
            "iat": now,
            "exp": now + (self.access_lifetime if lifetime is None else lifetime),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self.workspace_secret, algorithm="HS256")

    def _tenant_of(self, header: str) -> str | None:
        """The tenant a live, unrevoked token of this workspace names; None for anything else."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = jwt.decode(token, self.workspace_secret, algorithms=["HS256"], options={"require": ["id"]})
        except jwt.PyJWTError:
            return None
        if claims.get("iss") != self.workspace_key or claims.get("jti") in self._revoked:
            return None
        tenant = claims["id"]
        return tenant if tenant in self.sandboxes else None

    # -- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OAUTH_PATHS):
            await self.oauth(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        tenant = self._tenant_of(headers.get("authorization", ""))
        if tenant is None:
            body = {"type": "bad_request", "key": "not_authenticated", "message": "Invalid or expired access token"}
            await JSONResponse(body, status_code=401)(scope, receive, send)
            return
        await self.sandboxes[tenant](scope, receive, send)

    # -- OAuth -----------------------------------------------------------------------------------

    async def metadata(self, request: Request) -> Response:
        base = self.base_url
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "registration_endpoint": f"{base}/oauth/register",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": [SCOPE],
            }
        )

    async def register(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        uris = body.get("redirect_uris") if isinstance(body, dict) else None
        if not (isinstance(uris, list) and uris and all(isinstance(u, str) and u for u in uris)):
            return _oauth_error("invalid_redirect_uri", "redirect_uris must be a non-empty list of URLs")
        assert isinstance(body, dict)
        client = {
            **{k: v for k, v in body.items() if k in ("client_name", "client_uri", "scope")},
            "client_id": f"client-{secrets.token_hex(8)}",
            "client_id_issued_at": int(self.clock()),
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        self.clients[client["client_id"]] = client
        return JSONResponse(client, status_code=201)

    async def authorize(self, request: Request) -> Response:
        params: Mapping[str, str] = dict(request.query_params)
        if request.method == "POST":
            params = {**params, **{k: str(v) for k, v in (await request.form()).items()}}
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client["redirect_uris"]:
            # Never redirect to an address no registered client named.
            return _oauth_error("invalid_request", "Unknown client_id, or a redirect_uri it did not register")

        def back(**values: str) -> Response:
            state = {"state": params["state"]} if "state" in params else {}
            return RedirectResponse(f"{redirect_uri}?{urlencode({**values, **state})}", status_code=302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        if params.get("scope", SCOPE) != SCOPE:
            return back(error="invalid_scope", error_description=f"Ask for the {SCOPE!r} scope")
        tenant = params.get("tenant")
        if tenant is None:
            return HTMLResponse(self._sign_in_page(params))
        if tenant not in self.sandboxes:
            return back(error="access_denied", error_description="No such tenant")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            client["client_id"], tenant, redirect_uri, params["code_challenge"], self.clock() + CODE_LIFETIME
        )
        return back(code=code)

    def _sign_in_page(self, params: Mapping[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        buttons = "".join(
            f'<button name="tenant" value="{html.escape(k)}">{html.escape(k)}</button> ' for k in self.sandboxes
        )
        return (
            "<!doctype html><title>Sign in to the Membrane sandbox</title><h1>Sign in to the Membrane sandbox</h1>"
            f'<p>Choose the tenant to act as:</p><form method="post">{hidden}{buttons}</form>'
        )

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self._codes.pop(form.get("code", ""), None)
            if (
                grant is None
                or grant.expires_at < self.clock()
                or grant.client_id != form.get("client_id")
                or grant.redirect_uri != form.get("redirect_uri")
                or not secrets.compare_digest(_s256(form.get("code_verifier", "")), grant.challenge)
            ):
                return _oauth_error("invalid_grant", "The code is unknown, used, expired, or its verifier is wrong")
        elif grant_type == "refresh_token":
            grant = self._refresh.pop(form.get("refresh_token", ""), None)
            if grant is None or grant.client_id != form.get("client_id"):
                return _oauth_error("invalid_grant", "Unknown or used refresh token")
        else:
            return _oauth_error("unsupported_grant_type", "Use authorization_code or refresh_token")
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = _Grant(grant.client_id, grant.tenant)
        return JSONResponse(
            {
                "access_token": self.mint(grant.tenant),
                "token_type": "Bearer",
                "expires_in": self.access_lifetime,
                "refresh_token": refresh,
                "scope": SCOPE,
                "default_workspace_key": self.workspace_key,
                "default_tenant_key": grant.tenant,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def revoke(self, request: Request) -> Response:
        token = str((await request.form()).get("token", ""))
        self._refresh.pop(token, None)
        try:
            claims = jwt.decode(token, self.workspace_secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return Response(status_code=200)  # RFC 7009: an unknown token is not an error
        self._revoked.add(str(claims.get("jti")))
        return Response(status_code=200)

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.close()


def _oauth_error(error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)
