"""An MCP client connected to the real server over the sandbox, and a person who answers its questions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, ElicitRequestFormParams, ElicitResult, TextContent

from kartra_mcp.server.app import PAGE_SIZE, build_server
from kartra_mcp.server.runtime import Runtime


class Person:
    """Answers confirmation questions the way a test says, and remembers what they were shown."""

    def __init__(self, answer: str = "accept") -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        assert isinstance(params, ElicitRequestFormParams)
        self.asked.append(params.message)
        if self.answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        if self.answer == "accept-unticked":
            return ElicitResult(action="accept", content={"confirm": False})
        assert self.answer in ("decline", "cancel")
        return ElicitResult(action="decline" if self.answer == "decline" else "cancel")


@asynccontextmanager
async def connect(
    runtime: Runtime, mode: str, person: Person | None = None, *, page_size: int = PAGE_SIZE
) -> AsyncIterator[Client]:
    """A client in the given era; with a `person` it declares form elicitation, without one it cannot ask."""
    server, _ = build_server(runtime, page_size=page_size)
    async with Client(server, mode=mode, elicitation_callback=person) as client:
        yield client


async def all_tools(client: Client) -> list[Any]:
    tools: list[Any] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


# Two of today's actions that an older cached catalog lacks.
DROPPED = {"refund-transaction", "get-lead"}


def age_the_cache(cache_dir: Path) -> None:
    """Make the cached catalog an older one, without the actions in `DROPPED`."""
    (path,) = cache_dir.glob("catalog-*.json")
    data = json.loads(path.read_text())
    data["actions"] = [a for a in data["actions"] if a["key"] not in DROPPED]
    path.write_text(json.dumps(data))
