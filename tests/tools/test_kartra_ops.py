from __future__ import annotations

import pytest

from kartra_mcp import phpform
from kartra_mcp.tools.kartra_ops import Invocation, ambiguity, invocations_in_form
from kartra_mcp.tools.spec import Annotations, Risk


def test_the_commands_in_a_form_are_read_in_order() -> None:
    form = phpform.decode(
        phpform.encode(
            {
                "lead": {"email": "a@example.com"},
                "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "refund_transaction"}],
            }
        )
    )
    found = invocations_in_form(form)
    assert found is not None
    assert [(i.cmd, i.risk) for i in found] == [("assign_tag", Risk.WRITE), ("refund_transaction", Risk.CRITICAL)]
    assert found[0].lead == {"email": "a@example.com"}


def test_get_lead_is_a_command_too() -> None:
    found = invocations_in_form({"get_lead": {"email": "a@example.com"}})
    assert found is not None and [(i.cmd, i.risk) for i in found] == [("get_lead", Risk.READ)]


def test_an_unknown_command_is_critical_and_unreadable_actions_are_unknown() -> None:
    found = invocations_in_form(phpform.decode("actions[0][cmd]=wipe_account"))
    assert found is not None and found[0].risk is Risk.CRITICAL
    assert invocations_in_form({"actions": ["refund_transaction"]}) is None


@pytest.mark.parametrize(
    ("risk", "expected"),
    [
        (Risk.READ, Annotations(read_only=True, destructive=False, idempotent=True)),
        (Risk.WRITE, Annotations(read_only=False, destructive=False, idempotent=False)),
        (Risk.DESTRUCTIVE, Annotations(read_only=False, destructive=True, idempotent=False)),
        (Risk.CRITICAL, Annotations(read_only=False, destructive=True, idempotent=False)),
    ],
)
def test_annotations_follow_the_risk_class(risk: Risk, expected: Annotations) -> None:
    assert Annotations.for_risk(risk) == expected


@pytest.mark.parametrize(
    ("cmd", "params", "lead"),
    [
        pytest.param(
            "revoke_membership_access", {"membership_name": "A"}, {"email": "a@x.io", "lead_id": "3"}, id="lead-twice"
        ),
        pytest.param(
            "revoke_membership_access",
            {"membership_id": "1", "membership_name": "B"},
            {"email": "a@x.io"},
            id="membership-twice",
        ),
        pytest.param(
            "grant_membership_access",
            {"membership_id": "1", "level_id": "2", "level_name": "Pro"},
            {"email": "a@x.io"},
            id="level-twice",
        ),
        pytest.param(
            "modify_subscription_status",
            {"subscription_id": "1", "transaction_internal_subscription_id": "2"},
            {},
            id="subscription-twice",
        ),
        pytest.param(
            "cancel_transaction", {"transaction_id": "5", "transaction_subscription_id": "I-X"}, {}, id="cancel-by-two"
        ),
    ],
)
def test_a_change_that_names_its_target_twice_is_ambiguous(
    cmd: str, params: dict[str, str], lead: dict[str, str]
) -> None:
    assert ambiguity(Invocation(cmd, params, lead)) is not None


def test_a_change_that_names_its_target_once_is_not() -> None:
    assert ambiguity(Invocation("revoke_membership_access", {"membership_name": "A"}, {"email": "a@x.io"})) is None
