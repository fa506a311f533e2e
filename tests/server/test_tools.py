"""End to end through the SDK's client, in both protocol eras, over the sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server import Server
from mcp.types import CallToolResult, ListToolsResult, Tool

from kartra_mcp.sandbox import FaultRule, Sandbox
from kartra_mcp.sandbox.actions import CATALOG
from kartra_mcp.server.app import _sanitize_errors, build_server
from kartra_mcp.server.runtime import Runtime, open_runtime
from tests.conftest import FAST_RETRY
from tests.routes import run_rule
from tests.server.conftest import all_tools, connect, text_of


def _data(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


async def test_every_sandbox_action_is_listed_with_its_words_schema_and_annotations(
    runtime: Runtime, mode: str
) -> None:
    async with connect(runtime, mode, page_size=10) as client:
        tools = {t.name: t for t in await all_tools(client)}
    assert {a.key for a in CATALOG} <= set(tools)
    assert {"kartra-api-request", "check-approval"} <= set(tools)
    assert "confirm-action" not in tools  # only when a person chose confirmation ids in the policy
    for action in CATALOG:
        tool = tools[action.key]
        assert tool.title == action.name
        assert tool.description is not None and tool.description.startswith(action.description)
        assert tool.input_schema["type"] == "object"
        assert tool.annotations is not None
        hints = tool.annotations
        assert None not in (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint)
        assert (tool.output_schema is not None) == (action.output_schema is not None)
    assert tools["get-lead"].annotations.read_only_hint is True
    assert tools["create-lead"].annotations.destructive_hint is False
    assert tools["refund-transaction"].annotations.destructive_hint is True
    assert "confirmation" in (tools["refund-transaction"].description or "")


async def test_the_tool_list_is_paginated_and_stable(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode, page_size=10) as client:
        first = await client.list_tools()
        assert len(first.tools) == 10 and first.next_cursor == "10"
        names = [t.name for t in await all_tools(client)]
        assert names == [t.name for t in await all_tools(client)]
        with pytest.raises(MCPError):
            await client.list_tools(cursor="not-a-cursor")


async def test_the_server_says_tools_can_change_in_both_eras(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        capabilities = client.server_capabilities
        assert capabilities is not None and capabilities.tools is not None
        assert capabilities.tools.list_changed is True


async def test_a_read_returns_the_accounts_data(
    runtime: Runtime, mode: str, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    lead = sandbox.account.leads[int(samples["lead_with_membership"]["id"])]
    async with connect(runtime, mode) as client:
        result = await client.call_tool("get-lead", {"email": lead.email})
    details = _data(result)["lead_details"]
    assert details["id"] == str(lead.id)
    assert details["first_name"] == lead.profile["first_name"]
    assert [m["membership_name"] for m in details["memberships"]] == [
        sandbox.account.memberships[m].name for m in lead.memberships
    ]
    assert json.loads(text_of(result)) == result.structured_content


async def test_a_lead_created_can_be_read_back(runtime: Runtime, mode: str) -> None:
    email = f"new.lead.{mode}@example.com"
    async with connect(runtime, mode) as client:
        created = _data(
            await client.call_tool(
                "create-lead",
                {
                    "email": email,
                    "first_name": "Nova",
                    "custom_fields": [{"field_identifier": "job_title", "field_value": "Coach"}],
                },
            )
        )
        read = _data(await client.call_tool("get-lead", {"lead_id": created["lead_details"]["id"]}))
    assert read["lead_details"]["email"] == email
    assert read["lead_details"]["first_name"] == "Nova"
    assert {"field_identifier": "job_title", "field_type": "input_field", "field_value": "Coach"} in read[
        "lead_details"
    ]["custom_fields"]


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        pytest.param("get-lead", {"emial": "a@example.com"}, "emial", id="misspelt-argument"),
        pytest.param("refund-transaction", {"refund_amount": "ten"}, "transaction_id", id="missing-and-wrong-type"),
        pytest.param("give-points-to-lead", {"email": "a@example.com", "points": 0}, "points", id="below-minimum"),
        pytest.param("no-such-tool", {}, "Unknown tool", id="unknown-tool"),
        pytest.param("get-leads", {}, "get-lead", id="unknown-tool-with-suggestion"),
        pytest.param("kartra-api-request", {"path": "https://evil.example/api"}, "Absolute URLs", id="proxy-absolute"),
        pytest.param("kartra-api-request", {"body": {"api_key": "x"}}, "api_key", id="proxy-credentials"),
    ],
)
async def test_bad_calls_are_errors_that_say_what_to_change_and_send_nothing(
    runtime: Runtime, mode: str, sandbox: Sandbox, name: str, arguments: dict[str, Any], problem: str
) -> None:
    async with connect(runtime, mode) as client:
        sandbox.requests.clear()
        result = await client.call_tool(name, arguments)
    assert result.is_error
    assert problem in text_of(result)
    assert sandbox.requests == []


async def test_a_kartra_refusal_is_an_error_with_kartras_message_and_code(
    runtime: Runtime, mode: str, samples: dict[str, Any]
) -> None:
    async with connect(runtime, mode) as client:
        result = await client.call_tool("assign-tag", {"email": samples["lead"]["email"], "tag_name": "No Such Tag"})
    assert result.is_error
    assert result.structured_content is not None
    assert (result.structured_content["code"], result.structured_content["message"]) == ("212", "Tag does not exist")
    assert "retrieve-account-tags" in text_of(result)


async def test_a_membrane_error_is_an_error_result_not_a_protocol_error(
    runtime: Runtime, mode: str, sandbox: Sandbox
) -> None:
    sandbox.faults.rules = [FaultRule(route=run_rule("act"), status=403)]
    async with connect(runtime, mode) as client:
        result = await client.call_tool("retrieve-account-tags", {})
    assert result.is_error
    assert result.structured_content is not None and result.structured_content["error"] == "MembraneAccessDenied"


async def test_the_proxy_runs_a_get_lead_command(runtime: Runtime, mode: str, samples: dict[str, Any]) -> None:
    async with connect(runtime, mode) as client:
        result = await client.call_tool(
            "kartra-api-request", {"body": {"get_lead": {"email": samples["lead"]["email"]}}}
        )
    data = _data(result)
    assert data["status_code"] == 200
    assert data["body"]["lead_details"]["id"] == samples["lead"]["id"]


async def test_a_write_through_the_proxy_changes_what_the_actions_see(
    runtime: Runtime, mode: str, samples: dict[str, Any]
) -> None:
    email = samples["lead"]["email"]
    async with connect(runtime, mode) as client:
        body = {"lead": {"email": email}, "actions": [{"cmd": "assign_tag", "tag_name": "Beta Tester"}]}
        _data(await client.call_tool("kartra-api-request", {"body": body}))
        lead = _data(await client.call_tool("get-lead", {"email": email}))["lead_details"]
    assert "Beta Tester" in [t["tag_name"] for t in lead["tags"]]


async def test_search_mode_lists_two_tools_that_reach_every_action(
    settings: Any, sandbox: Sandbox, mode: str, samples: dict[str, Any]
) -> None:
    async with (
        open_runtime(settings.model_copy(update={"tool_mode": "search"}), sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        names = [t.name for t in await all_tools(client)]
        assert names == ["search-actions", "run-action", "kartra-api-request", "check-approval"]
        found = _data(await client.call_tool("search-actions", {"query": "refund a payment", "limit": 3}))
        assert found["actions"][0]["name"] == "refund-transaction"
        assert found["actions"][0]["needs_confirmation"] is True
        assert "transaction_id" in found["actions"][0]["input_schema"]["properties"]
        as_text = await client.call_tool(
            "run-action", {"action": "get-lead", "input": json.dumps({"email": samples["lead"]["email"]})}
        )
        assert _data(as_text)["lead_details"]["email"] == samples["lead"]["email"]
        bad = await client.call_tool("run-action", {"action": "get-lead", "input": {"emial": "x"}})
        assert bad.is_error and "emial" in text_of(bad)


async def test_internal_failures_reach_the_client_without_their_text(mode: str) -> None:
    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(tools=[Tool(name="boom", input_schema={"type": "object"})])

    async def call_tool(ctx: Any, params: Any) -> CallToolResult:
        raise KeyError("secret-internal-detail")

    server: Server[Any] = Server("t", on_list_tools=list_tools, on_call_tool=call_tool)
    server.middleware.append(_sanitize_errors)
    async with Client(server, mode=mode) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("boom", {})
    assert raised.value.error.code == -32603
    assert "secret" not in raised.value.error.message


async def test_a_sandbox_server_says_so_in_its_instructions(runtime: Runtime, mode: str) -> None:
    server, _ = build_server(runtime)
    async with Client(server, mode=mode) as client:
        instructions = client.instructions
        assert client.server_info is not None and client.server_info.name == "kartra-mcp"
    assert instructions is not None and instructions.startswith("SANDBOX")


async def test_a_numeric_id_sent_for_a_string_is_sent_and_audited_as_its_digits(
    runtime: Runtime, mode: str, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    lead = samples["lead_with_transactions"]
    tag = next(t for t in sandbox.account.tags.values() if t.id not in sandbox.account.leads[int(lead["id"])].tags)
    async with connect(runtime, mode) as client:
        result = await client.call_tool("assign-tag", {"lead_id": int(lead["id"]), "tag_name": tag.name})
        refused = await client.call_tool("assign-tag", {"lead_id": float(lead["id"]) + 0.5, "tag_name": "x"})
    assert not result.is_error, text_of(result)
    assert tag.id in sandbox.account.leads[int(lead["id"])].tags
    row = runtime.audit.rows(tool="assign-tag", outcome="success")[0]
    assert row.arguments["lead_id"] == lead["id"]
    assert refused.is_error and "in quotes" in text_of(refused)
