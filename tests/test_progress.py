"""Slow work reports what it is doing to whoever waits for it, and to no one otherwise."""

from __future__ import annotations

from kartra_mcp import progress
from kartra_mcp.membrane import MembraneClient
from kartra_mcp.sandbox import Sandbox


async def test_paging_through_a_list_reports_each_page_to_the_current_listener(
    membrane: MembraneClient, sandbox: Sandbox
) -> None:
    heard: list[str] = []

    async def listener(message: str) -> None:
        heard.append(message)

    connection = sandbox.connections[0]["id"]
    async with progress.reporting_to(listener):
        actions = await membrane.list_actions(connection_id=connection, page_size=10)
    await membrane.list_actions(connection_id=connection, page_size=10)  # no listener: nothing heard
    assert len(heard) == -(-len(actions) // 10)
    assert heard[-1] == f"{len(actions)} listed from /actions so far"
