"""Prompts and argument completion through the SDK's client, in both eras, from the sandbox account."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import PromptReference, ResourceTemplateReference, TextContent

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.policy import Policy
from kartra_mcp.tools.spec import Risk
from tests.conftest import FAST_RETRY
from tests.routes import ran
from tests.server.conftest import connect


def _runs(sandbox: Sandbox, action: str) -> int:
    action_id = BY_KEY[action].id
    return sum(1 for r in sandbox.requests if ran([r], action_id))


async def _prompt_text(client: Client, name: str, arguments: dict[str, str] | None = None) -> str:
    result = await client.get_prompt(name, arguments)
    (message,) = result.messages
    assert message.role == "user" and isinstance(message.content, TextContent)
    return message.content.text


async def _complete(client: Client, prompt: str, name: str, value: str, **context: str) -> list[str]:
    result = await client.complete(PromptReference(name=prompt), {"name": name, "value": value}, context or None)
    return result.completion.values


async def test_the_prompts_for_the_jobs_people_do_are_listed_with_their_arguments(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        capabilities = client.server_capabilities
    assert set(prompts) == {"find-customer", "refund-customer", "tag-leads", "review-todays-changes"}
    refund = prompts["refund-customer"].arguments or []
    assert [(a.name, a.required) for a in refund] == [("email", True), ("transaction_id", False), ("reason", False)]
    assert capabilities.prompts is not None and capabilities.completions is not None


async def test_the_refund_prompt_walks_through_the_preview_and_waits_for_the_persons_yes(
    runtime: Runtime, mode: str
) -> None:
    async with connect(runtime, mode) as client:
        text = await _prompt_text(client, "refund-customer", {"email": "a@example.com", "transaction_id": "700001"})
        with pytest.raises(MCPError, match="refund-customer needs email"):
            await client.get_prompt("refund-customer", {"transaction_id": "700001"})
        with pytest.raises(MCPError, match="Unknown prompt"):
            await client.get_prompt("refund-everyone")
    assert "a@example.com" in text and "700001" in text and "refund-transaction" in text
    assert "wait for my explicit yes" in text and "never confirm on my behalf" in text


async def test_the_review_prompt_carries_todays_audit_rows(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        await client.call_tool("create-lead", {"email": "reviewed-today@example.com"})
        text = await _prompt_text(client, "review-todays-changes")
    assert "reviewed-today@example.com" in text and '"outcome": "success"' in text


async def test_tag_list_and_transaction_arguments_complete_from_the_account_through_membrane(
    runtime: Runtime, mode: str, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    lead = samples["lead_with_transactions"]
    theirs = [str(t.id) for t in sandbox.account.lead_transactions(int(lead["id"]))]
    async with connect(runtime, mode) as client:
        tags = await _complete(client, "tag-leads", "tag", "vi")
        lists = await _complete(client, "tag-leads", "list", "news")
        again = await _complete(client, "tag-leads", "tag", "v")
        transactions = await _complete(client, "refund-customer", "transaction_id", "", email=lead["email"])
        without_lead = await _complete(client, "refund-customer", "transaction_id", "7")
    assert tags == ["VIP"]
    assert lists == ["Newsletter"]
    assert "VIP" in again and _runs(sandbox, "retrieve-account-tags") == 1  # the second answer came from the cache
    assert transactions == theirs
    assert without_lead == []


async def test_emails_and_audit_row_ids_complete_from_what_this_server_has_done(runtime: Runtime, mode: str) -> None:
    async with connect(runtime, mode) as client:
        await client.call_tool("create-lead", {"email": "completed.lead@example.com"})
        emails = await _complete(client, "find-customer", "email", "complet")
        several = await _complete(client, "tag-leads", "emails", "x@example.com, compl")
        row_id = runtime.audit.rows(limit=1)[0].id
        ids = await client.complete(
            ResourceTemplateReference(uri="kartra-mcp://audit/{id}"), {"name": "id", "value": str(row_id)}
        )
    assert emails == ["completed.lead@example.com"]
    assert several == ["x@example.com, completed.lead@example.com"]
    assert ids.completion.values == [str(row_id)]


@pytest.mark.parametrize(
    "policy",
    [
        Policy(actions={"retrieve-account-tags": "confirm"}),
        # Classed a write by the person, it is one: allowed as a call, never run unasked for a suggestion.
        Policy(risk={"retrieve-account-tags": Risk.WRITE}),
    ],
    ids=["confirmed", "classed-a-write"],
)
async def test_a_read_the_policy_does_not_allow_is_not_run_for_a_suggestion(
    settings: Settings, sandbox: Sandbox, policy: Policy
) -> None:
    async with (
        open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime,
        connect(runtime, "auto") as client,
    ):
        tags = await _complete(client, "tag-leads", "tag", "")
    assert tags == []
    assert _runs(sandbox, "retrieve-account-tags") == 0
