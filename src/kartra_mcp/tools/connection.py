"""Which Kartra connection to use, and how to make one when there is none."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from kartra_mcp.errors import ConfigError, MembraneNotFound
from kartra_mcp.membrane import Connection, ConnectionRequest, MembraneClient

logger = logging.getLogger(__name__)

INTEGRATION_KEY = "kartra"

UrlCallback = Callable[[ConnectionRequest], None]


class ConnectionMemory:
    """The last connection resolved through one Membrane with one set of credentials, beside the catalog cache.

    A start without `KARTRA_MCP_CONNECTION_ID` reads it to find its cached catalog without asking
    Membrane first. It holds only ids and names, never a credential. `who` tells the credentials
    apart (see `runtime.credential_identity`): two accounts behind one Membrane address each find
    only the connection they found themselves, never the other's.
    """

    def __init__(self, cache_dir: Path, base_url: str, who: str = "") -> None:
        key = hashlib.sha256(f"{base_url}|{who}".encode()).hexdigest()[:16]
        self.path = cache_dir / f"connection-{key}.json"

    def recall(self) -> str | None:
        """The remembered connection id; anything unusable counts as nothing remembered."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("ignoring %s: %s", self.path, exc)
            return None
        found = data.get("id") if isinstance(data, dict) else None
        if not isinstance(found, str) or not found:
            logger.warning("ignoring %s: it names no connection", self.path)
            return None
        return found

    def remember(self, connection: Connection) -> None:
        if connection.id == self.recall():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"id": connection.id, "name": connection.name}), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            logger.warning("could not remember the connection in %s: %s", self.path, exc)


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
