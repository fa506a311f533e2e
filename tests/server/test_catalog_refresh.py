"""The on-disk catalog cache: a start serves it at once, the refresh that follows is retried until it
succeeds and tells clients of both eras when the tools changed; an unusable cache counts as none."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import PromptReference, ToolListChangedNotification
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import FaultRule, Sandbox, SandboxConfig, asgi_transport
from kartra_mcp.schemas import checked
from kartra_mcp.server.app import build_server
from kartra_mcp.server.runtime import SANDBOX_URL, Runtime, credential_identity, open_runtime
from kartra_mcp.tools.connection import ConnectionMemory
from tests.conftest import FAST_RETRY
from tests.routes import carried_by
from tests.server.conftest import DROPPED, age_the_cache


def _as_membrane(settings: Settings, sandbox: Sandbox) -> Settings:
    """The sandbox reached the way a real Membrane is: by URL and token, so the cache is in play."""
    return settings.model_copy(update={"membrane_api_url": SANDBOX_URL, "membrane_token": SecretStr(sandbox.token)})


@asynccontextmanager
async def _runtime(settings: Settings, sandbox: Sandbox, *, serving: bool = False) -> AsyncIterator[Runtime]:
    """A runtime over the sandbox: as a one-off command opens it, or (`serving`) as the server does."""
    async with open_runtime(
        _as_membrane(settings, sandbox),
        transport=asgi_transport(sandbox),
        retry=FAST_RETRY,
        start_timeout=5 if serving else None,
    ) as runtime:
        runtime.upkeep.backoff = FAST_RETRY
        yield runtime


async def _nobody_told() -> None:
    raise AssertionError("clients were told of a change that did not happen")


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


async def test_the_cache_records_which_schemas_passed_the_meta_schema(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox) as runtime:
        schemas = [s for spec in runtime.catalog.specs for s in (spec.input_schema, spec.output_schema) if s]
    (path,) = settings.cache_dir.glob("catalog-*.json")

    record = json.loads(path.read_text())["checked"]

    assert record == sorted({str(checked.digest(s)) for s in schemas})


async def test_a_cache_without_a_record_of_checked_schemas_serves_the_same_tools(
    settings: Settings, sandbox: Sandbox
) -> None:
    """A cache an earlier version wrote: every schema is checked again, and the tools are the same."""
    async with _runtime(settings, sandbox) as runtime:
        before = [(s.name, s.input_schema, s.output_schema) for s in runtime.catalog.specs]
    (path,) = settings.cache_dir.glob("catalog-*.json")
    data = json.loads(path.read_text())
    del data["checked"]
    path.write_text(json.dumps(data))

    async with _runtime(settings, sandbox) as runtime:
        assert runtime.catalog.loaded_from_cache
        assert [(s.name, s.input_schema, s.output_schema) for s in runtime.catalog.specs] == before


async def test_a_refresh_that_changes_nothing_tells_no_one(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    async with _runtime(settings, sandbox, serving=True) as runtime:
        await runtime.upkeep.keep_current(_nobody_told)
        assert runtime.upkeep.current


async def test_a_changed_catalog_is_announced_to_a_2025_client(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    age_the_cache(settings.cache_dir)
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            seen.append(message)

    async with _runtime(settings, sandbox, serving=True) as runtime:
        server, notifier = build_server(runtime)
        async with Client(server, mode="legacy", message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            await runtime.upkeep.keep_current(notifier.changed)
            with anyio.fail_after(5):
                while not seen:
                    await anyio.sleep(0.01)
            after = {t.name for t in (await client.list_tools()).tools}
    assert not DROPPED & before
    assert after >= DROPPED


async def test_a_changed_catalog_is_announced_to_a_2026_listener(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    age_the_cache(settings.cache_dir)
    async with _runtime(settings, sandbox, serving=True) as runtime:
        server, notifier = build_server(runtime)
        async with Client(server) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            async with client.listen(tools_list_changed=True) as subscription:
                await runtime.upkeep.keep_current(notifier.changed)
                with anyio.fail_after(5):
                    async for _event in subscription:
                        break
            after = {t.name for t in (await client.list_tools()).tools}
    assert not DROPPED & before
    assert after >= DROPPED


async def test_a_failed_refresh_is_retried_serving_the_cache_until_it_succeeds(
    settings: Settings, sandbox: Sandbox
) -> None:
    async with _runtime(settings, sandbox):
        pass
    age_the_cache(settings.cache_dir)
    served: list[int] = []
    told: list[bool] = []

    async def note_wait(seconds: float) -> None:
        served.append(len(runtime.catalog.specs))
        # Membrane recovers once the sandbox has refused three whole attempts (each is retried four times).
        sandbox.faults.rules = [] if len(served) == 3 else sandbox.faults.rules

    async def tell() -> None:
        told.append(True)

    async with _runtime(settings, sandbox, serving=True) as runtime:
        sandbox.faults.rules = [FaultRule(route="GET /connections*", status=503)]
        runtime.upkeep.backoff = replace(FAST_RETRY, sleep=note_wait)
        await runtime.upkeep.keep_current(tell)
        assert served == [29, 29, 29]
        assert len(runtime.catalog.specs) == 31
        assert told == [True]


async def test_a_start_with_a_cache_asks_membrane_nothing_before_serving(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox):
        pass
    sandbox.requests.clear()
    sandbox.faults.rules = [FaultRule(route="*", hang_seconds=600)]
    with anyio.fail_after(30):
        async with _runtime(settings, sandbox, serving=True) as runtime:
            assert runtime.catalog.loaded_from_cache and runtime.problem is None
            assert len(runtime.catalog.specs) == 31
    assert sandbox.requests == []


async def test_a_start_without_a_cache_and_with_membrane_silent_says_why_and_serves(
    settings: Settings, sandbox: Sandbox
) -> None:
    sandbox.faults.rules = [FaultRule(route="*", hang_seconds=600)]
    async with open_runtime(
        _as_membrane(settings, sandbox), transport=asgi_transport(sandbox), retry=FAST_RETRY, start_timeout=0.2
    ) as runtime:
        server, _ = build_server(runtime)
        async with Client(server) as client:
            result = await client.call_tool("kartra-api-request", {"method": "GET", "path": "/"})
            instructions = client.instructions
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"Kartra is not available yet: Membrane at {SANDBOX_URL} did not answer within 0.2 s." in text
    assert "kartra-mcp doctor" in text
    assert instructions is not None and instructions.startswith("AT START: Kartra is not available yet")


@pytest.mark.parametrize(
    "content",
    ["{ not json", "[]", "null", "42", '"catalog"', '{"actions": 5}', '{"version": 1}', "[" * 100_000, "\udcff"],
)
async def test_an_unusable_cache_file_counts_as_none(settings: Settings, sandbox: Sandbox, content: str) -> None:
    async with _runtime(settings, sandbox):
        pass
    (path,) = settings.cache_dir.glob("catalog-*.json")
    for serving in (False, True):
        path.write_text(content, errors="surrogateescape")
        async with _runtime(settings, sandbox, serving=serving) as runtime:
            assert not runtime.catalog.loaded_from_cache
            assert len(runtime.catalog.specs) == 31


@pytest.mark.parametrize("content", ["[]", "null", '{"id": 42}', '{"id": ""}', "{ not json"])
def test_an_unusable_connection_memory_counts_as_none(tmp_path: Path, content: str) -> None:
    memory = ConnectionMemory(tmp_path, "http://membrane.example")
    memory.path.write_text(content)
    assert memory.recall() is None


async def test_a_start_finds_its_cache_through_the_remembered_connection(settings: Settings, sandbox: Sandbox) -> None:
    """Without KARTRA_MCP_CONNECTION_ID, the connection found last time leads to the cache."""
    async with _runtime(settings, sandbox) as first:
        assert first.connection is not None
        found = first.connection.id
    who = credential_identity(_as_membrane(settings, sandbox))
    assert ConnectionMemory(settings.cache_dir, SANDBOX_URL, who).recall() == found
    sandbox.faults.rules = [FaultRule(route="*", status=503)]
    async with _runtime(settings, sandbox, serving=True) as runtime:
        assert runtime.catalog.loaded_from_cache
        assert runtime.catalog.connection_id == found


async def test_a_cached_connection_membrane_no_longer_vouches_for_refuses_every_call(settings: Settings) -> None:
    """Two connections now, none named: the remembered one is not used, and calls say what to set.
    Completion reads the account too: it reads nothing from that connection either."""
    sandbox = Sandbox(SandboxConfig(connections=2))
    try:
        first = sandbox.connections[0]["id"]
        async with _runtime(settings.model_copy(update={"connection_id": first}), sandbox):
            pass
        async with _runtime(settings, sandbox, serving=True) as runtime:
            assert runtime.catalog.loaded_from_cache and runtime.problem is None
            server, notifier = build_server(runtime)
            runtime.upkeep.backoff = replace(FAST_RETRY, sleep=lambda _: _stop_after_one_wait())
            with pytest.raises(_Stop):
                await runtime.upkeep.keep_current(notifier.changed)
            sandbox.requests.clear()
            async with Client(server) as client:
                result = await client.call_tool("retrieve-account-tags", {})
                found = await client.complete(PromptReference(name="tag-leads"), {"name": "tag", "value": ""}, None)
    finally:
        sandbox.close()
    assert found.completion.values == []
    assert carried_by(sandbox.requests) == set()  # no run reached Membrane, on either route
    assert result.is_error
    assert "2 Kartra connections are connected" in result.content[0].text  # type: ignore[union-attr]
    assert "KARTRA_MCP_CONNECTION_ID" in result.content[0].text  # type: ignore[union-attr]


class _Stop(Exception):
    pass


async def _stop_after_one_wait() -> None:
    raise _Stop


async def test_a_start_with_other_credentials_does_not_serve_the_connection_another_one_found(
    settings: Settings, sandbox: Sandbox
) -> None:
    """Two accounts behind one Membrane address: a warm start of one never serves the other's tools."""
    async with _runtime(settings, sandbox):
        pass  # the first account's connection is remembered and its catalog cached
    other = Sandbox(SandboxConfig(tenant_key="another-tenant", faults=[FaultRule(route="*", status=503)]))
    try:
        async with _runtime(settings, other, serving=True) as runtime:
            assert not runtime.catalog.loaded_from_cache
            assert runtime.catalog.specs == []
            assert runtime.problem is not None and "Kartra is not available yet" in runtime.problem
    finally:
        other.close()


async def test_a_closed_2025_session_is_not_kept_for_notifications(settings: Settings, sandbox: Sandbox) -> None:
    async with _runtime(settings, sandbox) as runtime:
        server, notifier = build_server(runtime)
        for _ in range(3):
            async with Client(server, mode="legacy") as client:
                await client.list_tools()
                assert notifier.held() == 1

        assert notifier.held() == 0  # a server open for days must not keep every session it ever had
