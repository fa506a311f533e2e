"""The MCP server: the only package that imports `mcp`."""

from kartra_mcp.server.app import build_server
from kartra_mcp.server.runtime import Runtime, open_runtime

__all__ = ["Runtime", "build_server", "open_runtime"]
