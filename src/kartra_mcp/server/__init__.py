"""The MCP server: the only package that imports `mcp`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kartra_mcp._lazy import lazy_exports

if TYPE_CHECKING:
    from kartra_mcp.server.app import build_server
    from kartra_mcp.server.runtime import Runtime, open_runtime

__all__ = ["Runtime", "build_server", "open_runtime"]

# The CLI lives in this package: importing it must not import the SDK until a command needs it.
__getattr__ = lazy_exports(
    __name__,
    {
        "build_server": "kartra_mcp.server.app",
        "Runtime": "kartra_mcp.server.runtime",
        "open_runtime": "kartra_mcp.server.runtime",
    },
)
