"""Finding the Kartra connection, and making one when there is none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest

from kartra_mcp.errors import ConfigError
from kartra_mcp.membrane import BearerToken, ConnectionRequest, MembraneClient
from kartra_mcp.sandbox import Sandbox, SandboxConfig, asgi_transport
from kartra_mcp.server.runtime import SANDBOX_URL
from kartra_mcp.tools.connection import connect_kartra, resolve_connection
from tests.conftest import FAST_RETRY


def _client(sandbox: Sandbox) -> MembraneClient:
    return MembraneClient(
        base_url=SANDBOX_URL, auth=BearerToken(sandbox.token), transport=asgi_transport(sandbox), retry=FAST_RETRY
    )


@pytest.fixture
async def empty() -> AsyncIterator[tuple[Sandbox, MembraneClient]]:
    sandbox = Sandbox(SandboxConfig(connections=0, leads=5))
    async with _client(sandbox) as client:
        yield sandbox, client


async def test_the_only_kartra_connection_is_chosen(membrane: MembraneClient, sandbox: Sandbox) -> None:
    assert (await resolve_connection(membrane, None)).id == sandbox.connections[0]["id"]


async def test_a_named_connection_is_used_as_named(membrane: MembraneClient, sandbox: Sandbox) -> None:
    assert (await resolve_connection(membrane, sandbox.connections[0]["id"])).name == "Kartra"


async def test_a_named_connection_that_does_not_exist_says_how_to_find_one(membrane: MembraneClient) -> None:
    with pytest.raises(ConfigError, match="kartra-mcp doctor"):
        await resolve_connection(membrane, "0" * 24)


async def test_no_connection_says_how_to_connect(empty: tuple[Sandbox, MembraneClient]) -> None:
    with pytest.raises(ConfigError, match="kartra-mcp connect"):
        await resolve_connection(empty[1], None)


async def test_several_connections_without_a_choice_list_them_and_the_setting() -> None:
    sandbox = Sandbox(SandboxConfig(connections=2, leads=5))
    async with _client(sandbox) as client:
        with pytest.raises(ConfigError) as raised:
            await resolve_connection(client, None)
    message = str(raised.value)
    assert "KARTRA_MCP_CONNECTION_ID" in message
    assert all(c["id"] in message for c in sandbox.connections)


async def test_connecting_shows_the_link_and_waits_until_the_person_finishes(
    empty: tuple[Sandbox, MembraneClient],
) -> None:
    sandbox, client = empty
    shown: list[ConnectionRequest] = []

    def show(request: ConnectionRequest) -> None:
        shown.append(request)

    async def person_opens_the_link() -> None:
        async with httpx2.AsyncClient(transport=asgi_transport(sandbox)) as browser:
            assert (await browser.get(shown[0].url)).status_code == 200

    async with anyio.create_task_group() as group:
        result: list[str] = []

        async def connect() -> None:
            connection = await connect_kartra(client, poll_every=0.01, timeout=5, show_url=show)
            result.append(connection.id)

        group.start_soon(connect)
        with anyio.fail_after(5):
            while not shown:
                await anyio.sleep(0.01)
        await person_opens_the_link()
    assert result == [sandbox.connections[0]["id"]]
    assert (await resolve_connection(client, None)).id == result[0]
