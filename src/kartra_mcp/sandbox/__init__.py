"""An embedded sandbox: a Membrane-compatible API with a stateful Kartra account inside.

Runs in-process (`Sandbox(...).app` behind `asgi_transport`, so the same HTTP client code as
production talks to it) or standalone (`kartra-mcp sandbox`).
"""

from __future__ import annotations

import httpx2

from kartra_mcp.sandbox.app import INTEGRATION_KEY, Sandbox, SandboxConfig, mint_tenant_token
from kartra_mcp.sandbox.faults import FaultRule, parse_rules
from kartra_mcp.sandbox.oauth import Tenants

__all__ = [
    "INTEGRATION_KEY",
    "FaultRule",
    "Sandbox",
    "SandboxConfig",
    "Tenants",
    "asgi_transport",
    "mint_tenant_token",
    "parse_rules",
]


def asgi_transport(sandbox: Sandbox) -> httpx2.ASGITransport:
    """An httpx2 transport that delivers requests to the sandbox in-process."""
    # Errors inside the sandbox are answered with Membrane's 500 body, as the real API would.
    return httpx2.ASGITransport(app=sandbox.app, raise_app_exceptions=False)
