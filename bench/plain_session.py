"""A new MCP session opened with plain HTTP requests instead of the SDK's client.

The SDK's client spends more CPU on a new session than either server does (the side-by-side
benchmark's split and client floor show it), so its timing says more about the client than about
the servers. This sends the same requests the SDK's client sends before its first tools/list
answer (2025-11-25: initialize, notifications/initialized, tools/list; 2026-07-28: server/discover,
tools/list) on a fresh connection, reads each answer whether it comes as JSON or as SSE, and parses
the list: what a lean client must do at least, so the servers' own share shows.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import httpx2

HANDSHAKE = "2025-11-25"
STATELESS = "2026-07-28"
_CLIENT = {"name": "bench", "version": "0"}
_ACCEPT = "application/json, text/event-stream"


def _answer(response: httpx2.Response) -> Any:
    """The JSON-RPC answer in a response, whether written as JSON or as the last SSE event carrying data."""
    response.raise_for_status()
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


async def open_and_list(url: str, token: str, era: str, tls: ssl.SSLContext) -> tuple[float, int]:
    """Open a session in `era` and list the tools: (seconds until the list was read, how many tools it had).

    A handshake-era session is ended afterwards, as the SDK's client ends it, outside the time.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": _ACCEPT}
    started = time.perf_counter()
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60), trust_env=False, verify=tls) as http:
        if era == HANDSHAKE:
            params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": _CLIENT}
            opened = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
            agreed = _answer(opened)["result"]["protocolVersion"]  # an older server may answer an older version
            session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": agreed}
            await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
            listing = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session)
            listed = len(_answer(listing)["result"]["tools"])
            seconds = time.perf_counter() - started
            await http.delete(url, headers=session)
            return seconds, listed
        meta = {
            "io.modelcontextprotocol/protocolVersion": era,
            "io.modelcontextprotocol/clientInfo": _CLIENT,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        for number, method in enumerate(("server/discover", "tools/list"), start=1):
            body = {"jsonrpc": "2.0", "id": number, "method": method, "params": {"_meta": meta}}
            listing = await http.post(url, json=body, headers={"mcp-protocol-version": era, "mcp-method": method})
        listed = len(_answer(listing)["result"]["tools"])
        return time.perf_counter() - started, listed
