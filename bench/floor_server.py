"""The least an MCP server built on the same SDK can do for a new session: the side-by-side's client floor.

    python -m bench.floor_server --port PORT --tools LISTING.json

It answers `initialize` (or `server/discover`) and a constant `tools/list` (LISTING.json, a
ListToolsResult captured from kartra-mcp, so the client parses a list of the same size and shape)
over streamable HTTP with the SDK's own app, plain JSON responses and nothing else: no policy, no
catalog, no middleware. What a new session costs against it is mostly what the SDK client costs,
which no server can take away.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.types import ListToolsResult, PaginatedRequestParams


def floor_app(listing: ListToolsResult) -> Any:
    async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        return listing

    server: Server[Any] = Server("floor", version="0", on_list_tools=list_tools)
    return server.streamable_http_app(json_response=True, host="127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tools", type=Path, required=True)
    args = parser.parse_args()
    listing = ListToolsResult.model_validate_json(args.tools.read_text())
    uvicorn.run(floor_app(listing), host="127.0.0.1", port=args.port, lifespan="on", log_config=None, access_log=False)


if __name__ == "__main__":
    main()
