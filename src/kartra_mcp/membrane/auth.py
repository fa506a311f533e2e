"""Credentials for Membrane, as httpx2 auth objects: a given bearer token, or a tenant token
minted from workspace credentials the way Membrane's SDK mints it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpx2

from kartra_mcp.config import Settings
from kartra_mcp.errors import ConfigError, MembraneNotAuthenticated

TOKEN_LIFETIME = 3600
# Re-mint when fewer than this many seconds remain, as the SDK does.
REFRESH_MARGIN = 60


class BearerToken(httpx2.Auth):
    """Sends a token someone else issued: a tenant JWT, a client token or an OAuth access token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "BearerToken(<redacted>)"


_REQUEST_TOKEN: ContextVar[str | None] = ContextVar("membrane_request_token", default=None)


@contextmanager
def person_token(token: str) -> Iterator[None]:
    """Send `token` with every Membrane request made inside this block (by `RequestToken`)."""
    reset = _REQUEST_TOKEN.set(token)
    try:
        yield
    finally:
        _REQUEST_TOKEN.reset(reset)


class RequestToken(httpx2.Auth):
    """Sends the token of the person being served (hosted mode): one client, each call its own token.

    Outside `person_token` there is no one to act for, so nothing is sent: never another's token.
    """

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = _REQUEST_TOKEN.get()
        if not token:
            raise MembraneNotAuthenticated(401, "No person's Membrane token is bound to this request; nothing was sent")
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def __repr__(self) -> str:
        return "RequestToken()"


class WorkspaceCredentials(httpx2.Auth):
    """Mints an HS256 tenant token `{id: tenant, iss: workspace, exp}` and re-mints it before expiry."""

    def __init__(
        self,
        workspace_key: str,
        workspace_secret: str,
        tenant_key: str,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        self.workspace_key = workspace_key
        self.tenant_key = tenant_key
        self._secret = workspace_secret
        self._clock = clock
        self._lifetime = lifetime
        self._token = ""
        self._expires_at = 0.0

    @property
    def token(self) -> str:
        now = self._clock()
        if self._expires_at - now < REFRESH_MARGIN:
            # Imported here: a start with a bearer token (most of them) never signs anything.
            import jwt
            from jwt.warnings import InsecureKeyLengthWarning

            self._expires_at = int(now) + self._lifetime
            claims = {"id": self.tenant_key, "iss": self.workspace_key, "exp": int(self._expires_at)}
            with warnings.catch_warnings():
                # Membrane issues the workspace secret; warning about its length helps no one here.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                self._token = jwt.encode(claims, self._secret, algorithm="HS256")
        return self._token

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request

    def __repr__(self) -> str:
        return f"WorkspaceCredentials(workspace_key={self.workspace_key!r}, tenant_key={self.tenant_key!r})"


def auth_from_settings(settings: Settings) -> httpx2.Auth:
    """The credentials the settings name; a clear message when they name none."""
    if settings.membrane_token is not None:
        return BearerToken(settings.membrane_token.get_secret_value())
    key, secret, tenant = (
        settings.membrane_workspace_key,
        settings.membrane_workspace_secret,
        settings.membrane_tenant_key,
    )
    if key and secret and tenant:
        return WorkspaceCredentials(key, secret.get_secret_value(), tenant)
    if key or secret or tenant:
        missing = [
            name
            for name, value in (
                ("MEMBRANE_WORKSPACE_KEY", key),
                ("MEMBRANE_WORKSPACE_SECRET", secret),
                ("MEMBRANE_TENANT_KEY", tenant),
            )
            if not value
        ]
        raise ConfigError(f"Workspace credentials are incomplete: set {', '.join(missing)} (or MEMBRANE_TOKEN).")
    raise ConfigError(
        "No Membrane credentials. Set MEMBRANE_TOKEN, or MEMBRANE_WORKSPACE_KEY + MEMBRANE_WORKSPACE_SECRET + "
        "MEMBRANE_TENANT_KEY; or run with --sandbox to use the embedded sandbox account."
    )
