"""Policy entries naming the built-in tools mean what they say: "deny" hides and refuses the tool."""

from __future__ import annotations

from typing import Any

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import open_runtime
from kartra_mcp.tools.executor import NoConfirmer
from kartra_mcp.tools.policy import Policy, policy_from_mapping
from tests.conftest import FAST_RETRY
from tests.server.conftest import all_tools, connect, text_of


def _refunded(sandbox: Sandbox, samples: dict[str, Any]) -> float:
    return sandbox.account.refunded_amount(int(samples["refundable_transaction"]["transaction_id"]))


async def test_with_confirm_action_denied_the_model_cannot_redeem_its_own_id(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    # Built directly, so a confirmation id is still issued: redeeming it must be refused all the same.
    policy = Policy(actions={"confirm-action": "deny"}, on_unconfirmable="token")
    tx = samples["refundable_transaction"]["transaction_id"]
    async with (
        open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        names = {t.name for t in await all_tools(client)}
        previewed = await client.call_tool("refund-transaction", {"transaction_id": tx})
        assert previewed.structured_content is not None
        redeemed = await client.call_tool(
            "confirm-action", {"confirmation_id": previewed.structured_content["confirmation_id"]}
        )
        rows = runtime.audit.rows(tool="confirm-action")
    assert "confirm-action" not in names
    assert redeemed.is_error and "denies confirm-action" in text_of(redeemed)
    assert _refunded(sandbox, samples) == 0
    assert [(r.outcome, r.decision) for r in rows] == [("refused", "deny")]


async def test_with_confirm_action_denied_in_the_policy_file_no_id_is_offered(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    policy = policy_from_mapping({"actions": {"confirm-action": "deny"}}, source="policy.toml")
    tx = samples["refundable_transaction"]["transaction_id"]
    async with open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime:
        result = await runtime.executor.call("refund-transaction", {"transaction_id": tx}, NoConfirmer())
    assert result.is_error and "confirmation_id" not in (result.structured or {})
    assert "refuses it" in result.text
    assert _refunded(sandbox, samples) == 0


async def test_denied_search_and_run_tools_are_hidden_and_refused(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    search_mode = settings.model_copy(update={"tool_mode": "search"})
    for denied, arguments in (
        ("search-actions", {"query": "tag a lead"}),
        ("run-action", {"action": "get-lead", "input": {"email": samples["lead"]["email"]}}),
    ):
        policy = Policy(actions={denied: "deny"})
        async with open_runtime(search_mode, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime:
            names = {s.name for s in runtime.executor.tools()}
            result = await runtime.executor.call(denied, arguments, NoConfirmer())
        assert denied not in names
        assert result.is_error and f"denies {denied}" in result.text


async def test_a_denied_proxy_tool_is_hidden_and_refused(settings: Settings, sandbox: Sandbox) -> None:
    policy = Policy(actions={"kartra-api-request": "deny"})
    async with open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime:
        names = {s.name for s in runtime.executor.tools()}
        result = await runtime.executor.call(
            "kartra-api-request", {"body": {"actions": [{"cmd": "retrieve_account_tags"}]}}, NoConfirmer()
        )
    assert "kartra-api-request" not in names
    assert result.is_error and "denies kartra-api-request" in result.text
