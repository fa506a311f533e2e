"""Resources through the SDK's client, in both eras: the policy in force, the audit log, the sandbox."""

from __future__ import annotations

import json
import warnings
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.session import MessageHandlerFnT
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification, TextResourceContents

from kartra_mcp.server.app import build_server
from kartra_mcp.server.resources import AUDIT_URI, POLICY_URI, SANDBOX_URI
from kartra_mcp.server.runtime import Runtime
from tests.server.conftest import Person, connect


async def _read(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    (contents,) = result.contents
    assert isinstance(contents, TextResourceContents) and contents.mime_type == "application/json"
    return json.loads(contents.text)


def _updates() -> tuple[list[str], MessageHandlerFnT]:
    """The URIs of the resource-updated notifications a client hears, and the handler that hears them."""
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    return updated, on_message


async def test_the_policy_audit_log_and_sandbox_are_listed_with_a_template_for_one_row(
    runtime: Runtime, mode: str
) -> None:
    async with connect(runtime, mode) as client:
        listed = {r.uri for r in (await client.list_resources()).resources}
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        capabilities = client.server_capabilities.resources
    assert listed == {POLICY_URI, AUDIT_URI, SANDBOX_URI}
    assert templates == ["kartra-mcp://audit/{id}"]
    assert capabilities is not None and capabilities.subscribe


async def test_the_policy_resource_says_what_each_class_does_and_how_much_of_each_cap_is_used(
    runtime: Runtime, mode: str, samples: dict[str, Any]
) -> None:
    transaction = samples["refundable_transaction"]["transaction_id"]
    async with connect(runtime, mode, Person("accept")) as client:
        before = await _read(client, POLICY_URI)
        refund = await client.call_tool("refund-transaction", {"transaction_id": transaction})
        after = await _read(client, POLICY_URI)
    assert not refund.is_error
    assert before["classes"] == {"read": "allow", "write": "allow", "destructive": "confirm", "critical": "confirm"}
    assert before["tools"]["refund-transaction"] == {"risk": "critical", "decision": "confirm"}
    assert before["caps"]["critical_calls_per_hour"]["used_in_the_last_hour"] == 0
    assert after["caps"]["critical_calls_per_hour"]["used_in_the_last_hour"] == 1


async def test_the_audit_resources_show_the_newest_rows_and_one_row_by_id(
    runtime: Runtime, mode: str, samples: dict[str, Any]
) -> None:
    transaction = samples["refundable_transaction"]["transaction_id"]
    async with connect(runtime, mode, Person("decline")) as client:
        await client.call_tool("refund-transaction", {"transaction_id": transaction})
        recent = await _read(client, AUDIT_URI)
        one = await _read(client, f"kartra-mcp://audit/{recent[0]['id']}")
        with pytest.raises(MCPError, match="No audit row 999999"):
            await client.read_resource("kartra-mcp://audit/999999")
        with pytest.raises(MCPError, match="Unknown resource"):
            await client.read_resource("kartra-mcp://nothing")
    assert recent[0]["tool"] == "refund-transaction" and recent[0]["outcome"] == "declined"
    assert one == recent[0]


async def test_the_sandbox_state_resource_counts_what_a_call_changed(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        before = await _read(client, SANDBOX_URI)
        await client.call_tool("create-lead", {"email": "resource-watch@example.com"})
        after = await _read(client, SANDBOX_URI)
    assert after["counts"]["leads"] == before["counts"]["leads"] + 1


async def test_a_2025_client_that_subscribed_hears_that_the_audit_log_changed(runtime: Runtime) -> None:
    updated, on_message = _updates()
    server, _ = build_server(runtime)
    async with Client(server, mode="legacy", message_handler=on_message) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe is 2025-only
            await client.subscribe_resource(AUDIT_URI)
        await client.call_tool("create-lead", {"email": "watched@example.com"})
        with anyio.fail_after(5):
            while not updated:
                await anyio.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.unsubscribe_resource(AUDIT_URI)
        await client.call_tool("create-lead", {"email": "unwatched@example.com"})
        await client.list_resources()
    assert updated == [AUDIT_URI]


async def test_a_2026_listener_hears_that_the_audit_log_changed(runtime: Runtime) -> None:
    server, _ = build_server(runtime)
    async with Client(server) as client, client.listen(resource_subscriptions=[AUDIT_URI]) as subscription:
        await client.call_tool("create-lead", {"email": "listened@example.com"})
        with anyio.fail_after(5):
            async for event in subscription:
                assert getattr(event, "uri", None) == AUDIT_URI
                break


async def test_a_2025_watcher_still_hears_after_another_watcher_of_the_same_resource_left(runtime: Runtime) -> None:
    updated, on_message = _updates()
    server, _ = build_server(runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe is 2025-only
        async with Client(server, mode="legacy", message_handler=on_message) as staying:
            await staying.subscribe_resource(AUDIT_URI)
            async with Client(server, mode="legacy") as leaving:
                await leaving.subscribe_resource(AUDIT_URI)
                await leaving.unsubscribe_resource(AUDIT_URI)
                await leaving.unsubscribe_resource(AUDIT_URI)  # twice: still counted once
            async with Client(server, mode="legacy") as closing:
                await closing.subscribe_resource(AUDIT_URI)
            await staying.call_tool("create-lead", {"email": "still-watched@example.com"})
            with anyio.fail_after(5):
                while not updated:
                    await anyio.sleep(0.01)
    assert updated == [AUDIT_URI]


async def test_a_2026_listener_opened_after_another_closed_still_hears(runtime: Runtime) -> None:
    server, _ = build_server(runtime)
    async with Client(server) as client:
        async with client.listen(resource_subscriptions=[AUDIT_URI]):
            pass
        async with client.listen(resource_subscriptions=[AUDIT_URI]) as subscription:
            await client.call_tool("create-lead", {"email": "listened-again@example.com"})
            with anyio.fail_after(5):
                async for event in subscription:
                    assert getattr(event, "uri", None) == AUDIT_URI
                    break
