"""tools/list from kept wire forms: a new session gets the page the one before it got, unless what the
page was built from (catalog, policy, the kind of client, the era) changed in between."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from mcp import Client, MCPError

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.app import KartraServer, build_server
from kartra_mcp.server.listing import ListingCache
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.policy import Policy
from tests.conftest import FAST_RETRY
from tests.server.conftest import all_tools
from tests.server.test_approval_apps import APPS


def _cache_of(server: KartraServer) -> ListingCache:
    return next(m for m in server.middleware if isinstance(m, ListingCache))


def _dumped(tools: list[Any]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


async def test_a_new_session_is_listed_from_the_page_kept_for_the_one_before(runtime: Runtime, mode: str) -> None:
    server, _ = build_server(runtime)
    async with Client(server, mode=mode) as first:
        listed = _dumped(await all_tools(first))
    async with Client(server, mode=mode) as second:
        again = _dumped(await all_tools(second))
    assert again == listed
    assert _cache_of(server).served == 1


async def test_what_one_session_does_to_its_listing_never_reaches_the_next(runtime: Runtime, mode: str) -> None:
    server, _ = build_server(runtime)
    for _ in range(2):  # the second listing is the kept page
        async with Client(server, mode=mode) as client:
            first = (await all_tools(client))[0]
            first.input_schema["properties"]["changed_by_a_client"] = {"type": "string"}
    async with Client(server, mode=mode) as client:
        first = (await all_tools(client))[0]
    assert "changed_by_a_client" not in first.input_schema["properties"]
    assert _cache_of(server).served == 2


async def test_each_era_gets_a_page_of_its_own(runtime: Runtime) -> None:
    server, _ = build_server(runtime)
    for mode in ("legacy", "auto", "legacy", "auto"):
        async with Client(server, mode=mode) as client:
            await client.list_tools()
    assert _cache_of(server).served == 2
    assert _cache_of(server).kept == 2


async def test_a_stricter_policy_is_listed_at_once(runtime: Runtime, mode: str) -> None:
    server, _ = build_server(runtime)
    async with Client(server, mode=mode) as client:
        before = {t.name for t in await all_tools(client)}
        runtime.executor.policy = replace(runtime.executor.policy, actions={"get-lead": "deny"})
        after = {t.name for t in await all_tools(client)}
    assert "get-lead" in before
    assert after == before - {"get-lead"}


async def test_a_page_kept_for_an_apps_host_is_never_shown_to_a_plain_client(
    settings: Settings, sandbox: Sandbox, mode: str
) -> None:
    async with open_runtime(settings, sandbox=sandbox, policy=Policy(), retry=FAST_RETRY) as runtime:
        server, _ = build_server(runtime)
        seen: list[set[str]] = []
        for extensions in ([APPS], [], [APPS], []):
            async with Client(server, mode=mode, extensions=extensions) as client:
                seen.append({t.name for t in await all_tools(client)})
    assert "approval-answer" in seen[0] and seen[0] == seen[2]
    assert "approval-answer" not in seen[1] and seen[1] == seen[3]
    assert _cache_of(server).served == 2


async def test_a_cursor_in_another_spelling_is_answered_but_keeps_no_page(runtime: Runtime, mode: str) -> None:
    server, _ = build_server(runtime, page_size=5)
    async with Client(server, mode=mode) as client:
        pages = [
            _dumped((await client.list_tools(cursor=cursor, cache_mode="bypass")).tools)
            for cursor in ("5", "05", "005", "5")
        ]
        with pytest.raises(MCPError, match="Unknown cursor"):
            await client.list_tools(cursor="9999", cache_mode="bypass")
        with pytest.raises(MCPError, match="Unknown cursor"):
            await client.list_tools(cursor="-1", cache_mode="bypass")
    assert pages[1:] == pages[:1] * 3
    assert _cache_of(server).kept == 1
    assert _cache_of(server).served == 1
