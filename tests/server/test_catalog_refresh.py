"""The on-disk catalog cache: a start serves it at once, the refresh that follows tells clients of both
eras when the tools changed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import ToolListChangedNotification
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import FaultRule, Sandbox, asgi_transport
from kartra_mcp.server.app import build_server, refresh_and_notify
from kartra_mcp.server.runtime import SANDBOX_URL, Runtime, open_runtime
from tests.conftest import FAST_RETRY

DROPPED = {"refund-transaction", "get-lead"}


def _as_membrane(settings: Settings, sandbox: Sandbox) -> Settings:
    """The sandbox reached the way a real Membrane is: by URL and token, so the cache is in play."""
    return settings.model_copy(update={"membrane_api_url": SANDBOX_URL, "membrane_token": SecretStr(sandbox.token)})


@asynccontextmanager
async def _runtime(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Runtime]:
    async with open_runtime(
        _as_membrane(settings, sandbox), transport=asgi_transport(sandbox), retry=FAST_RETRY
    ) as runtime:
        yield runtime


def _age_the_cache(cache_dir: Path) -> None:
    """Make the cached catalog an older one, without two of today's actions."""
    (path,) = cache_dir.glob("catalog-*.json")
    data = json.loads(path.read_text())
    data["actions"] = [a for a in data["actions"] if a["key"] not in DROPPED]
    path.write_text(json.dumps(data))


async def test_the_first_start_fetches_and_caches_the_catalog(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox) as runtime:
        assert not runtime.catalog.loaded_from_cache
    (path,) = settings.cache_dir.glob("catalog-*.json")
    assert len(json.loads(path.read_text())["actions"]) == 31


async def test_a_start_serves_the_cache_without_listing_actions(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    sandbox.requests.clear()
    async with _runtime(settings, sandbox) as runtime:
        assert runtime.catalog.loaded_from_cache
        assert len(runtime.catalog.specs) == 31
    assert not [r for r in sandbox.requests if r["path"] == "/actions"]


async def test_a_refresh_that_changes_nothing_tells_no_one(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    async with _runtime(settings, sandbox) as runtime:
        _, notifier = build_server(runtime)
        assert await refresh_and_notify(runtime, notifier) is False


async def test_a_changed_catalog_is_announced_to_a_2025_client(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    _age_the_cache(settings.cache_dir)
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            seen.append(message)

    async with _runtime(settings, sandbox) as runtime:
        server, notifier = build_server(runtime)
        async with Client(server, mode="legacy", message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            assert await refresh_and_notify(runtime, notifier)
            with anyio.fail_after(5):
                while not seen:
                    await anyio.sleep(0.01)
            after = {t.name for t in (await client.list_tools()).tools}
    assert not DROPPED & before
    assert after >= DROPPED


async def test_a_changed_catalog_is_announced_to_a_2026_listener(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    _age_the_cache(settings.cache_dir)
    async with _runtime(settings, sandbox) as runtime:
        server, notifier = build_server(runtime)
        async with Client(server) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            async with client.listen(tools_list_changed=True) as subscription:
                assert await refresh_and_notify(runtime, notifier)
                with anyio.fail_after(5):
                    async for _event in subscription:
                        break
            after = {t.name for t in (await client.list_tools()).tools}
    assert not DROPPED & before
    assert after >= DROPPED


async def test_a_failed_refresh_keeps_serving_the_cache(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    async with _runtime(settings, sandbox) as runtime:
        sandbox.faults.rules = [FaultRule(route="GET /actions", status=503)]
        _, notifier = build_server(runtime)
        assert await refresh_and_notify(runtime, notifier) is False
        assert len(runtime.catalog.specs) == 31


async def test_a_broken_cache_file_is_ignored(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    (path,) = settings.cache_dir.glob("catalog-*.json")
    path.write_text("{ not json")
    async with _runtime(settings, sandbox) as runtime:
        assert not runtime.catalog.loaded_from_cache
        assert len(runtime.catalog.specs) == 31


async def test_a_closed_2025_session_is_not_kept_for_notifications(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox) as runtime:
        server, notifier = build_server(runtime)
        for _ in range(3):
            async with Client(server, mode="legacy") as client:
                await client.list_tools()
                assert notifier.held() == 1

        assert notifier.held() == 0  # a server open for days must not keep every session it ever had
