"""An MCP client connected to the real server over the sandbox, and a person who answers its questions."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, ElicitRequestFormParams, ElicitResult, TextContent

from kartra_mcp.server.app import PAGE_SIZE, build_server
from kartra_mcp.server.runtime import Runtime
from tests.processes import end, local_env


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


class RawClient:
    """A client that writes JSON-RPC lines as given, so it can answer in ways the SDK never would."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        env = local_env(
            None, KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"), KARTRA_MCP_LOG_LEVEL="ERROR", **extra
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self._buffer = b""

    def close(self) -> None:
        end(self.process)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def receive(self, timeout: float = 30) -> dict[str, Any]:
        """The next message; read from the descriptor, since a buffered reader hides lines from select()."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                pytest.fail("the server said nothing: the call is still waiting")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail("the server closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def initialize(self, capabilities: dict[str, Any]) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": capabilities,
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            }
        )
        assert self.receive()["id"] == 1
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


# Two of today's actions that an older cached catalog lacks.
DROPPED = {"refund-transaction", "get-lead"}


def age_the_cache(cache_dir: Path) -> None:
    """Make the cached catalog an older one, without the actions in `DROPPED`."""
    (path,) = cache_dir.glob("catalog-*.json")
    data = json.loads(path.read_text())
    data["actions"] = [a for a in data["actions"] if a["key"] not in DROPPED]
    path.write_text(json.dumps(data))
