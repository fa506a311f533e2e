"""Guardrails through the SDK's client, in both eras: money, subscriptions and paid access move only
when a person says yes, and every step is in the audit log."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import FaultRule, Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import Runtime, open_runtime
from kartra_mcp.tools.call import Accepted, Answer, ConfirmationRequest, Declined, Deferred, NoConfirmer
from kartra_mcp.tools.confirm import ConfirmationBook
from kartra_mcp.tools.policy import Policy
from tests.conftest import FAST_RETRY
from tests.routes import ROUTES, carried_by, ran, raw_rule, run_rule
from tests.server.conftest import Person, all_tools, connect, text_of


@dataclass(frozen=True)
class Scenario:
    """One critical operation: how to ask for it, and how to see in the sandbox that it happened."""

    name: str
    request: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
    happened: Callable[[Sandbox, dict[str, Any]], bool]
    # words the person must see in the question
    shown: Callable[[dict[str, Any]], list[str]]


def _refund_happened(sandbox: Sandbox, samples: dict[str, Any]) -> bool:
    return sandbox.account.refunded_amount(int(samples["refundable_transaction"]["transaction_id"])) > 0


def _refund_count(sandbox: Sandbox, samples: dict[str, Any]) -> int:
    parent = int(samples["refundable_transaction"]["transaction_id"])
    return len(sandbox.account.children_of.get(parent, []))


SCENARIOS = [
    Scenario(
        "refund-transaction",
        lambda s: ("refund-transaction", {"transaction_id": s["refundable_transaction"]["transaction_id"]}),
        _refund_happened,
        lambda s: [
            f"{s['refundable_transaction']['amount']:.2f}",
            s["refundable_transaction"]["currency"],
            s["refundable_transaction"]["lead_email"],
            "Already refunded: 0.00",
            "Product:",
            "Paid",
        ],
    ),
    Scenario(
        "cancel-subscription",
        lambda s: ("cancel-subscription", {"transaction_id": s["active_subscription"]["transaction_id"]}),
        lambda box, s: (
            box.account.subscriptions[int(s["active_subscription"]["subscription_id"])].status == "Cancelled"
        ),
        lambda s: [
            s["active_subscription"]["subscription_id"],
            s["active_subscription"]["lead_email"],
            f"{s['active_subscription']['amount']:.2f}",
            "Product:",
        ],
    ),
    Scenario(
        "revoke-membership-access",
        lambda s: (
            "revoke-membership-access",
            {
                "email": s["lead_with_membership"]["email"],
                "membership_name": s["lead_with_membership"]["membership_name"],
            },
        ),
        lambda box, s: (
            not any(a["active"] for a in box.account.leads[int(s["lead_with_membership"]["id"])].memberships.values())
        ),
        lambda s: [
            s["lead_with_membership"]["email"],
            s["lead_with_membership"]["membership_name"],
            s["lead_with_membership"]["level_name"],
        ],
    ),
    Scenario(
        "proxy-refund",
        lambda s: (
            "kartra-api-request",
            {
                "body": {
                    "actions": [
                        {"cmd": "refund_transaction", "transaction_id": s["refundable_transaction"]["transaction_id"]}
                    ]
                }
            },
        ),
        _refund_happened,
        lambda s: [f"{s['refundable_transaction']['amount']:.2f}", s["refundable_transaction"]["lead_email"]],
    ),
]
scenarios = pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
# Whichever route carries a call (`/act`, or the old routes where Membrane lacks it), the same call is
# refused, previewed, confirmed and audited the same way.
routes = pytest.mark.parametrize("route", ROUTES)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# Confirmation ids, chosen in the policy: the tests of channel 6.
TOKENS = Policy(on_unconfirmable="token")


@asynccontextmanager
async def guarded(settings: Settings, sandbox: Sandbox, policy: Policy | None = None) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, sandbox=sandbox, policy=policy or Policy(), retry=FAST_RETRY) as runtime:
        yield runtime


def _asked_first(mode: str) -> list[str]:
    """A 2026-07-28 client is asked in a first round, audited before the answer comes back."""
    return ["awaiting_confirmation"] if mode == "auto" else []


def _text(result: CallToolResult) -> str:
    return text_of(result)


@scenarios
@routes
async def test_a_confirmed_call_is_done_once_and_audited(
    route: str, scenario: Scenario, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    person = Person("accept")
    tool, arguments = scenario.request(samples)
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, person) as client:
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows(tool=tool)
    assert not result.is_error, _text(result)
    assert scenario.happened(sandbox, samples)
    assert len(person.asked) == 1
    for fact in scenario.shown(samples):
        assert fact in person.asked[0], f"{fact!r} not shown in: {person.asked[0]}"
    assert [(r.outcome, r.confirmation, r.risk) for r in reversed(rows)] == [
        *[(o, "elicitation", "critical") for o in _asked_first(mode)],
        ("success", "elicitation", "critical"),
    ]
    assert carried_by(sandbox.requests) == {route}


@scenarios
@pytest.mark.parametrize("answer", ["decline", "cancel", "accept-unticked"])
@routes
async def test_a_declined_or_dismissed_confirmation_sends_nothing(
    route: str,
    scenario: Scenario,
    answer: str,
    mode: str,
    settings: Settings,
    sandbox: Sandbox,
    samples: dict[str, Any],
) -> None:
    tool, arguments = scenario.request(samples)
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, Person(answer)) as client:
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows(tool=tool)
    assert result.is_error
    assert "nothing was sent" in _text(result)
    assert not scenario.happened(sandbox, samples)
    assert [r.outcome for r in reversed(rows)] == [*_asked_first(mode), "declined"]


@scenarios
@routes
async def test_without_elicitation_only_confirm_action_runs_the_call_and_only_once(
    route: str, scenario: Scenario, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tool, arguments = scenario.request(samples)
    async with guarded(settings, sandbox, TOKENS) as runtime, connect(runtime, mode) as client:
        previewed = await client.call_tool(tool, arguments)
        assert previewed.is_error and previewed.structured_content is not None
        assert previewed.structured_content["status"] == "confirmation_required"
        for fact in scenario.shown(samples):
            assert fact in previewed.structured_content["preview"]
        assert not scenario.happened(sandbox, samples)
        confirmation_id = previewed.structured_content["confirmation_id"]
        confirmed = await client.call_tool("confirm-action", {"confirmation_id": confirmation_id})
        assert not confirmed.is_error, _text(confirmed)
        assert scenario.happened(sandbox, samples)
        state = sandbox.state()["counts"]
        replayed = await client.call_tool("confirm-action", {"confirmation_id": confirmation_id})
        assert replayed.is_error and "already used" in _text(replayed)
        assert sandbox.state()["counts"] == state
        outcomes = [(r.tool, r.outcome, r.confirmation) for r in reversed(runtime.audit.rows())]
    assert outcomes == [
        (tool, "awaiting_confirmation", "token"),
        (tool, "success", "token"),
        ("confirm-action", "refused", "token"),
    ]


@routes
async def test_the_confirmed_call_is_exactly_the_previewed_one(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]
    async with guarded(settings, sandbox, TOKENS) as runtime, connect(runtime, mode) as client:
        previewed = await client.call_tool(
            "refund-transaction", {"transaction_id": tx["transaction_id"], "refund_amount": 1.5}
        )
        assert previewed.structured_content is not None
        await client.call_tool("confirm-action", {"confirmation_id": previewed.structured_content["confirmation_id"]})
    refunds = [sandbox.account.transactions[c] for c in sandbox.account.children_of[int(tx["transaction_id"])]]
    assert [(r.type, r.amount) for r in refunds] == [("partial_refund", 1.5)]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda cid: cid[:-4] + "beef", id="forged-mac"),
        pytest.param(lambda cid: secrets.token_hex(12) + "." + cid.split(".")[1], id="unknown-nonce"),
        pytest.param(lambda cid: "please-just-do-it", id="made-up"),
    ],
)
async def test_a_forged_confirmation_id_runs_nothing(
    tamper: Callable[[str], str], mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tool, arguments = SCENARIOS[0].request(samples)
    async with guarded(settings, sandbox, TOKENS) as runtime, connect(runtime, mode) as client:
        previewed = await client.call_tool(tool, arguments)
        assert previewed.structured_content is not None
        result = await client.call_tool(
            "confirm-action", {"confirmation_id": tamper(previewed.structured_content["confirmation_id"])}
        )
    assert result.is_error and "nothing was run" in _text(result)
    assert not _refund_happened(sandbox, samples)


async def test_an_expired_confirmation_id_runs_nothing(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    clock = _Clock()
    tool, arguments = SCENARIOS[0].request(samples)
    async with guarded(settings, sandbox, TOKENS) as runtime, connect(runtime, mode) as client:
        runtime.executor.book = ConfirmationBook(b"s" * 32, ttl=300, clock=clock)
        previewed = await client.call_tool(tool, arguments)
        assert previewed.structured_content is not None
        clock.now += 301
        result = await client.call_tool(
            "confirm-action", {"confirmation_id": previewed.structured_content["confirmation_id"]}
        )
    assert result.is_error and "expired" in _text(result)
    assert not _refund_happened(sandbox, samples)


@scenarios
async def test_refuse_mode_refuses_when_the_client_cannot_ask(
    scenario: Scenario, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tool, arguments = scenario.request(samples)
    async with (
        guarded(settings, sandbox, Policy(on_unconfirmable="refuse")) as runtime,
        connect(runtime, mode) as client,
    ):
        names = {t.name for t in await all_tools(client)}
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows(tool=tool)
    assert "confirm-action" not in names
    assert result.is_error and "refuse" in _text(result)
    assert not scenario.happened(sandbox, samples)
    assert [r.outcome for r in rows] == ["refused"]


@pytest.mark.parametrize("scenario", [SCENARIOS[0], SCENARIOS[3]], ids=lambda s: s.name)
@routes
async def test_a_refund_over_the_cap_is_refused_without_asking(
    route: str, scenario: Scenario, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    person = Person("accept")
    cap = samples["refundable_transaction"]["amount"] - 1
    tool, arguments = scenario.request(samples)
    async with (
        guarded(settings, sandbox, Policy(max_refund_amount=cap)) as runtime,
        connect(runtime, mode, person) as client,
    ):
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows(tool=tool)
    assert result.is_error and "limit" in _text(result)
    assert person.asked == []
    assert not scenario.happened(sandbox, samples)
    assert [r.outcome for r in rows] == ["refused"]


@routes
async def test_refunding_a_refunded_transaction_is_refused_without_asking(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    person = Person("accept")
    refunded = samples["refunded_transaction"]["transaction_id"]
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, person) as client:
        sandbox.requests.clear()
        result = await client.call_tool("refund-transaction", {"transaction_id": refunded})
    assert result.is_error and "already refunded" in _text(result)
    assert person.asked == []
    assert not ran(sandbox.requests, BY_KEY["refund-transaction"].id)


async def test_revoking_access_the_lead_does_not_have_is_refused_without_asking(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    person = Person("accept")
    lead = next(lead for lead in sandbox.account.leads.values() if not lead.memberships and not lead.deleted)
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, person) as client:
        result = await client.call_tool(
            "revoke-membership-access", {"email": lead.email, "membership_name": "Growth Academy"}
        )
    assert result.is_error and "no such membership" in _text(result)
    assert person.asked == []


async def test_the_hourly_cap_on_critical_calls_holds(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    async with (
        guarded(settings, sandbox, Policy(max_critical_calls_per_hour=1)) as runtime,
        connect(runtime, mode, Person("accept")) as client,
    ):
        first = await client.call_tool(*SCENARIOS[1].request(samples))
        second = await client.call_tool(*SCENARIOS[0].request(samples))
    assert not first.is_error
    assert second.is_error and "per hour" in _text(second)
    assert not _refund_happened(sandbox, samples)


@pytest.mark.parametrize("switch", ["read_only", "kill_switch"])
async def test_read_only_and_the_kill_switch_hide_and_refuse_every_change(
    switch: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    policy = Policy(**{switch: True})  # type: ignore[arg-type]
    async with guarded(settings, sandbox, policy) as runtime, connect(runtime, mode, Person("accept")) as client:
        tools = {t.name: t for t in await all_tools(client)}
        assert all(
            t.annotations is not None and t.annotations.read_only_hint
            for n, t in tools.items()
            if n != "kartra-api-request"
        )
        assert "get-lead" in tools and "assign-tag" not in tools and "confirm-action" not in tools
        hidden = await client.call_tool("assign-tag", {"email": samples["lead"]["email"], "tag_name": "VIP"})
        refund = await client.call_tool(*SCENARIOS[3].request(samples))
        read = await client.call_tool("kartra-api-request", {"body": {"get_lead": {"email": samples["lead"]["email"]}}})
    assert hidden.is_error and refund.is_error
    assert not read.is_error
    assert not _refund_happened(sandbox, samples)


@routes
async def test_a_policy_can_deny_one_action_everywhere(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    policy = Policy(actions={"refund-transaction": "deny"})
    async with guarded(settings, sandbox, policy) as runtime, connect(runtime, mode, Person("accept")) as client:
        names = {t.name for t in await all_tools(client)}
        through_proxy = await client.call_tool(*SCENARIOS[3].request(samples))
    assert "refund-transaction" not in names
    assert through_proxy.is_error and "denies refund-transaction" in _text(through_proxy)


@routes
async def test_a_cancel_between_intent_and_outcome_leaves_an_unknown_row(
    route: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    sandbox.faults.rules = [FaultRule(route=run_rule(route), hang_seconds=30)]
    async with guarded(settings, sandbox) as runtime:
        with anyio.move_on_after(0.3):
            await runtime.executor.call(
                "assign-tag", {"email": samples["lead"]["email"], "tag_name": "VIP"}, NoConfirmer()
            )
        rows = runtime.audit.rows()
    assert [(r.tool, r.outcome) for r in rows] == [("assign-tag", "unknown")]


@routes
async def test_a_write_whose_answer_is_lost_says_the_outcome_is_unknown(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    refund = BY_KEY["refund-transaction"].id
    sandbox.faults.rules = [FaultRule(route=run_rule(route, refund), hang_seconds=30, after=True)]
    async with (
        open_runtime(
            settings.model_copy(update={"request_timeout": 0.3}), sandbox=sandbox, policy=Policy(), retry=FAST_RETRY
        ) as runtime,
        connect(runtime, mode, Person("accept")) as client,
    ):
        result = await client.call_tool(*SCENARIOS[0].request(samples))
        rows = runtime.audit.rows(tool="refund-transaction")
    assert result.is_error and "OUTCOME UNKNOWN" in _text(result)
    assert "retrieve-transactions-from-lead" in _text(result)
    assert _refund_count(sandbox, samples) == 1
    assert [r.outcome for r in reversed(rows)] == [*_asked_first(mode), "unknown"]


class _Scripted:
    """A client that answers the confirmation question as scripted, as a 2026-07-28 client would."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[ConfirmationRequest] = []

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        self.asked.append(request)
        answer = self.answers.pop(0)
        first = self.asked[0].confirmation_id
        if answer == "defer":
            return Deferred()
        if answer == "slow-accept":
            await anyio.sleep(0.05)
            return Accepted("elicitation")
        return Declined("decline", echoed_id=first)


async def test_a_declined_question_leaves_no_id_that_confirm_action_can_spend(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tool, arguments = SCENARIOS[0].request(samples)
    client = _Scripted("defer", "decline")
    async with guarded(settings, sandbox, TOKENS) as runtime:
        first = await runtime.executor.call(tool, arguments, client)
        assert first.awaiting is not None
        declined = await runtime.executor.call(tool, arguments, client)
        assert declined.structured is not None and declined.structured["error"] == "ConfirmationDeclined"
        for leftover in {r.confirmation_id for r in client.asked}:
            spent = await runtime.executor.call("confirm-action", {"confirmation_id": leftover}, NoConfirmer())
            assert spent.structured is not None and spent.structured["error"] == "ConfirmationInvalid"
    assert not _refund_happened(sandbox, samples)


async def test_concurrent_critical_calls_cannot_overrun_the_hourly_cap(settings: Settings, sandbox: Sandbox) -> None:
    account = sandbox.account
    sales = [
        t.id
        for t in account.transactions.values()
        if t.type == "sale" and not t.test and t.subscription_id is None and account.refunded_amount(t.id) == 0
    ][:3]
    results = []
    async with guarded(settings, sandbox, Policy(max_critical_calls_per_hour=1)) as runtime:

        async def refund(transaction: int) -> None:
            result = await runtime.executor.call(
                "refund-transaction", {"transaction_id": str(transaction)}, _Scripted("slow-accept")
            )
            results.append(result)

        async with anyio.create_task_group() as group:
            for sale in sales:
                group.start_soon(refund, sale)
        outcomes = sorted(r.outcome for r in runtime.audit.rows(tool="refund-transaction"))
    assert sum(account.refunded_amount(s) > 0 for s in sales) == 1
    assert sorted(r.is_error for r in results) == [False, True, True]
    assert outcomes == ["refused", "refused", "success"]


@routes
async def test_a_refund_hidden_in_a_form_that_looks_like_json_is_refused_and_audited(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]["transaction_id"]
    masked = f'{{"x":"&actions[0][cmd]=refund_transaction&actions[0][transaction_id]={tx}&y=","get_lead":{{}}}}'
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, Person("decline")) as client:
        result = await client.call_tool("kartra-api-request", {"body": masked})
        rows = runtime.audit.rows(tool="kartra-api-request")
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"] == "ProxyRequestRefused"
    assert not _refund_happened(sandbox, samples)
    assert [r.outcome for r in rows] == ["refused"]


@routes
async def test_a_proxy_write_that_ran_before_its_upstream_failed_reports_an_unknown_outcome(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    sandbox.faults.rules = [FaultRule(route=raw_rule(route), status=502, after=True, upstream=True)]
    name, arguments = SCENARIOS[3].request(samples)
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, Person("accept")) as client:
        result = await client.call_tool(name, arguments)
        rows = runtime.audit.rows(tool=name)
    assert result.is_error and "OUTCOME UNKNOWN" in _text(result)
    assert result.structured_content is not None and result.structured_content["outcome_unknown"] is True
    assert _refund_count(sandbox, samples) == 1
    assert [(r.outcome, r.upstream_status) for r in reversed(rows)] == [
        *[(o, None) for o in _asked_first(mode)],
        ("unknown", 502),
    ]


@pytest.mark.parametrize(
    ("policy", "tool", "arguments"),
    [
        pytest.param(Policy(read_only=True), "assign-tag", {"tag_name": "VIP"}, id="read-only"),
        pytest.param(Policy(kill_switch=True), "unassign-tag", {"tag_name": "VIP"}, id="kill-switch"),
        pytest.param(Policy(actions={"assign-tag": "deny"}), "assign-tag", {"tag_name": "VIP"}, id="denied-action"),
        pytest.param(Policy(), "kartra-api-request", {"path": "https://evil.example/"}, id="proxy-refusal"),
    ],
)
async def test_every_refusal_is_in_the_audit_log(
    policy: Policy,
    tool: str,
    arguments: dict[str, Any],
    settings: Settings,
    sandbox: Sandbox,
    samples: dict[str, Any],
) -> None:
    if tool != "kartra-api-request":
        arguments = {**arguments, "email": samples["lead"]["email"]}
    async with guarded(settings, sandbox, policy) as runtime:
        result = await runtime.executor.call(tool, arguments, NoConfirmer())
        rows = runtime.audit.rows()
    assert result.is_error
    assert [(r.tool, r.outcome) for r in rows] == [(tool, "refused")]


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (400, "fix what the message names"),
        (401, "kartra-mcp doctor"),
        (403, "grant access"),
        (404, "list the tools again"),
        (429, "wait a few seconds"),
    ],
)
@routes
async def test_membrane_refusing_a_write_says_what_to_do_next(
    route: str, status: int, advice: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    sandbox.faults.rules = [FaultRule(route=run_rule(route), status=status)]
    async with guarded(settings, sandbox) as runtime:
        result = await runtime.executor.call(
            "assign-tag", {"email": samples["lead"]["email"], "tag_name": "VIP"}, NoConfirmer()
        )
    assert result.is_error and advice in result.text and "Nothing was done" in result.text


@routes
async def test_a_refund_smuggled_inside_a_json_string_does_nothing_in_read_only_mode(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]["transaction_id"]
    hidden = f"{tx}&actions[0][cmd]=refund_transaction&actions[0][transaction_id]={tx}&z="
    arguments = {
        "headers": {"Content-Type": "application/JSON"},
        "body": {"actions": [{"cmd": "get_transaction_details", "transaction_id": hidden}]},
    }
    async with guarded(settings, sandbox, Policy(read_only=True)) as runtime, connect(runtime, mode) as client:
        await client.call_tool("kartra-api-request", arguments)
    assert not _refund_happened(sandbox, samples)


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        pytest.param(
            "revoke-membership-access",
            {"email": "<lead_with_membership.email>", "lead_id": "3", "membership_name": "Growth Academy"},
            id="lead-by-email-and-id",
        ),
        pytest.param(
            "revoke-membership-access",
            {"email": "<lead_with_membership.email>", "membership_id": "1", "membership_name": "Coaching Circle"},
            id="membership-twice",
        ),
        pytest.param(
            "kartra-api-request",
            {
                "body": {
                    "actions": [
                        {
                            "cmd": "modify_subscription_status",
                            "subscription_status_modification": "cancel",
                            "subscription_id": "<active_subscription.subscription_id>",
                            "transaction_internal_subscription_id": "14803",
                        }
                    ]
                }
            },
            id="subscription-twice",
        ),
        pytest.param(
            "kartra-api-request",
            {
                "body": {
                    "actions": [
                        {"cmd": "refund_transaction", "transaction_id": "<refundable_transaction.transaction_id>"},
                        {"cmd": "refund_transaction", "transaction_id": "<refunded_transaction.transaction_id>"},
                    ]
                }
            },
            id="two-critical-commands",
        ),
    ],
)
async def test_a_change_must_name_one_target_so_the_preview_shows_what_changes(
    tool: str, arguments: dict[str, Any], mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str) and value.startswith("<"):
            sample, field = value.strip("<>").split(".")
            return samples[sample][field]
        return value

    person = Person("accept")
    before = sandbox.state()["counts"]
    async with guarded(settings, sandbox) as runtime, connect(runtime, mode, person) as client:
        result = await client.call_tool(tool, fill(arguments))
        rows = runtime.audit.rows(tool=tool)
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"] == "ActionDenied"
    assert person.asked == []
    assert sandbox.state()["counts"] == before
    assert [r.outcome for r in rows] == ["refused"]


@pytest.mark.parametrize("amount", ["nan", "inf", "-5", "0", "lots"])
async def test_a_refund_amount_that_is_not_a_positive_number_is_refused_before_asking(
    amount: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    tx = samples["refundable_transaction"]["transaction_id"]
    body = {"actions": [{"cmd": "refund_transaction", "transaction_id": tx, "refund_amount": amount}]}
    client = _Scripted("slow-accept")
    async with guarded(settings, sandbox, Policy(max_refund_amount=10)) as runtime:
        result = await runtime.executor.call("kartra-api-request", {"body": body}, client)
    assert result.is_error and result.structured is not None and result.structured["error"] == "ActionDenied"
    assert client.asked == []
    assert not _refund_happened(sandbox, samples)


async def test_past_the_bound_on_pending_confirmations_a_critical_call_is_refused_audited_and_not_sent(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    arguments = {"transaction_id": samples["refundable_transaction"]["transaction_id"]}
    tokens = Policy(on_unconfirmable="token")
    async with open_runtime(settings, sandbox=sandbox, policy=tokens, retry=FAST_RETRY) as runtime:
        runtime.executor.book.limit = 2
        waiting = [await runtime.executor.call("refund-transaction", arguments, NoConfirmer()) for _ in range(2)]
        sandbox.requests.clear()
        refused = await runtime.executor.call("refund-transaction", arguments, NoConfirmer())
        sent = list(sandbox.requests)
        rows = runtime.audit.rows(tool="refund-transaction")
        confirmed = await runtime.executor.call(
            "confirm-action", {"confirmation_id": (waiting[0].structured or {})["confirmation_id"]}, NoConfirmer()
        )
    assert refused.is_error and "2 calls on this connection are already waiting" in refused.text
    assert "let them expire" in refused.text and (refused.structured or {}).get("error") == "TooManyPending"
    assert not ran(sent, BY_KEY["refund-transaction"].id)
    assert [r.outcome for r in rows] == ["refused", "awaiting_confirmation", "awaiting_confirmation"]
    assert "already waiting" in (rows[0].error or "")
    assert not confirmed.is_error  # the ids issued before the bound still work
