"""Which Kartra connection to use, and how to make one when there is none."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from kartra_mcp.errors import ConfigError, MembraneNotFound
from kartra_mcp.membrane import Connection, ConnectionRequest, MembraneClient

logger = logging.getLogger(__name__)

INTEGRATION_KEY = "kartra"

UrlCallback = Callable[[ConnectionRequest], None]


async def resolve_connection(client: MembraneClient, connection_id: str | None) -> Connection:
    """The connection named by `KARTRA_MCP_CONNECTION_ID`, else the only connected Kartra connection."""
    if connection_id:
        try:
            return await client.get_connection(connection_id)
        except MembraneNotFound:
            raise ConfigError(
                f"KARTRA_MCP_CONNECTION_ID={connection_id} is not a connection this token can see. "
                "Run `kartra-mcp doctor` to list the Kartra connections, then set one of their ids."
            ) from None
    found = [
        c
        for c in await client.list_connections(integration_key=INTEGRATION_KEY)
        if c.integration_key in ("", INTEGRATION_KEY)
    ]
    connected = [c for c in found if c.is_connected]
    if len(connected) == 1:
        return connected[0]
    if not connected:
        broken = f" ({len(found)} exist but are disconnected: reconnect one in Membrane)" if found else ""
        raise ConfigError(
            f"No connected Kartra connection in this Membrane tenant{broken}. Run `kartra-mcp connect` to connect "
            "Kartra (it prints a link to open in a browser), then start again."
        )
    listing = "; ".join(f"{c.id} ({c.name})" for c in connected)
    raise ConfigError(
        f"{len(connected)} Kartra connections are connected: {listing}. Set KARTRA_MCP_CONNECTION_ID to the one to use."
    )


async def connect_kartra(
    client: MembraneClient, *, poll_every: float = 2.0, timeout: float = 600.0, show_url: UrlCallback
) -> Connection:
    """Ask Membrane for a connection request, show its URL to the person, and wait until it completes."""
    request = await client.create_connection_request(integration_key=INTEGRATION_KEY)
    show_url(request)
    with anyio.fail_after(timeout):
        while request.status == "pending":
            await anyio.sleep(poll_every)
            request = await client.get_connection_request(request.request_id)
    if request.status != "success" or not request.result_connection_id:
        raise ConfigError(f"Connecting Kartra ended with status {request.status!r}: {request.result_error or ''}")
    return await client.get_connection(request.result_connection_id)
