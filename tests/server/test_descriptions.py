"""What the tools say about themselves agrees with what the guardrails do, in both eras."""

from __future__ import annotations

from typing import Any

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import Runtime
from tests.server.conftest import Person, all_tools, connect


async def test_no_tool_says_an_id_wins_over_an_email_and_a_call_giving_both_is_refused(
    runtime: Runtime, mode: str, samples: dict[str, Any]
) -> None:
    lead = samples["lead_with_transactions"]
    async with connect(runtime, mode) as client:
        tools = {t.name: t for t in await all_tools(client)}
        result = await client.call_tool(
            "assign-tag", {"email": lead["email"], "lead_id": str(lead["id"]), "tag_name": "vip"}
        )
        read = await client.call_tool("get-lead", {"email": lead["email"], "lead_id": str(lead["id"])})
    assert not any("wins over" in (t.description or "") for t in tools.values())
    assert "Give email or lead_id, never both." in (tools["assign-tag"].description or "")
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"] == "ActionDenied"
    # A read giving both is answered (Kartra takes the id), and says nothing of a refusal.
    assert "never both" not in (tools["get-lead"].description or "")
    assert not read.is_error


async def test_the_sandbox_catalog_lists_at_most_1000_bytes_per_tool_with_every_description_kept(
    runtime: Runtime, mode: str
) -> None:
    async with connect(runtime, mode) as client:
        tools = await all_tools(client)
    sizes = [len(t.model_dump_json(by_alias=True, exclude_none=True).encode()) for t in tools]
    assert sum(sizes) / len(tools) <= 1000
    assert all(t.description for t in tools)
    for tool in tools:
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{name}"


async def test_the_proxy_tool_says_once_that_changes_may_need_a_confirmation(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        tools = {t.name: t for t in await all_tools(client)}
    description = tools["kartra-api-request"].description or ""
    assert description.count("person's confirmation") == 1
    assert "may need a person's confirmation before they run: the server asks them" in description


async def test_the_refund_question_says_cannot_be_undone_once(
    runtime: Runtime, mode: str, samples: dict[str, Any], sandbox: Sandbox, settings: Settings
) -> None:
    person = Person("decline")
    transaction = samples["refundable_transaction"]["transaction_id"]
    async with connect(runtime, mode, person) as client:
        await client.call_tool("refund-transaction", {"transaction_id": transaction})
    assert len(person.asked) == 1
    assert person.asked[0].lower().count("cannot be undone") == 1
