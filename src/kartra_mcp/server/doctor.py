"""What `kartra-mcp doctor` says about the settings and the connections, in words for a person."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from kartra_mcp.config import Settings
    from kartra_mcp.membrane import Connection, MembraneClient

_WORKSPACE = ("MEMBRANE_WORKSPACE_KEY", "MEMBRANE_WORKSPACE_SECRET", "MEMBRANE_TENANT_KEY")


def token_source(settings: Settings) -> str:
    """Which variables the Membrane token comes from (never its value)."""
    workspace = settings.membrane_workspace_key is not None or settings.membrane_workspace_secret is not None
    if settings.membrane_token is not None:
        unused = f" ({', '.join(_WORKSPACE)} are set too, and unused while it is)" if workspace else ""
        return f"the token comes from the environment variable MEMBRANE_TOKEN{unused}"
    return f"tokens are minted as needed from the environment variables {', '.join(_WORKSPACE)}"


def url_problem(url: str) -> str | None:
    """Why MEMBRANE_API_URL cannot be Membrane's API, before anything is sent there; None when it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme and parts.netloc else "no http:// or https:// scheme"
        return f"MEMBRANE_API_URL={url!r} has {shown}; it must be an http(s) address"
    if not parts.hostname:
        return f"MEMBRANE_API_URL={url!r} names no host"
    return None


async def kartra_connections(client: MembraneClient) -> list[Connection]:
    """The tenant's Kartra connections, connected or not."""
    from kartra_mcp.tools.connection import INTEGRATION_KEY

    listed = await client.list_connections(integration_key=INTEGRATION_KEY)
    return [c for c in listed if c.integration_key in ("", INTEGRATION_KEY)]


def connection_fix(connections: list[Connection], wanted: str | None) -> str:
    """What to set, listing the connections there are to choose from."""
    if not connections:
        return "run `kartra-mcp connect` to connect Kartra" + (
            ", then unset KARTRA_MCP_CONNECTION_ID" if wanted else ""
        )
    listing = "".join(
        f"\n        {c.id}  {c.name or '(no name)'}"
        + ("" if c.is_connected else "  (disconnected: reconnect it in Membrane)")
        for c in connections
    )
    return f"set KARTRA_MCP_CONNECTION_ID to one of this tenant's Kartra connections:{listing}"
