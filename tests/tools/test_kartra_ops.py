from __future__ import annotations

import pytest

from kartra_mcp import phpform
from kartra_mcp.tools.kartra_ops import classify_action, invocations_in_body
from kartra_mcp.tools.spec import Annotations, Risk


@pytest.mark.parametrize(
    ("key", "risk"),
    [
        ("get-lead", Risk.READ),
        ("retrieve-account-tags", Risk.READ),
        ("create-lead", Risk.WRITE),
        ("grant-membership-access", Risk.WRITE),
        ("unassign-tag", Risk.DESTRUCTIVE),
        ("unsubscribe-lead-from-sequence", Risk.DESTRUCTIVE),
        ("refund-transaction", Risk.CRITICAL),
        ("cancel-subscription", Risk.CRITICAL),
        ("revoke-membership-access", Risk.CRITICAL),
    ],
)
def test_known_actions_have_their_class_from_the_table(key: str, risk: Risk) -> None:
    assert classify_action(key)[0] is risk


@pytest.mark.parametrize(
    ("key", "name", "kind", "risk"),
    [
        pytest.param("list-coupons", "List Coupons", "list-data-records", Risk.READ, id="read-type"),
        pytest.param("get-affiliate", "Get Affiliate", "connector-operation", Risk.READ, id="read-by-name"),
        pytest.param("create-coupon", "Create Coupon", "create-data-record", Risk.WRITE, id="write-type"),
        pytest.param("delete-coupon", "Delete Coupon", "delete-data-record", Risk.DESTRUCTIVE, id="delete-type"),
        pytest.param("remove-lead-note", "Remove note", None, Risk.DESTRUCTIVE, id="remove-word"),
        pytest.param("get-refund-link", "Get refund link", "connector-operation", Risk.CRITICAL, id="money-wins"),
        pytest.param("issue-chargeback", "", None, Risk.CRITICAL, id="chargeback"),
        pytest.param("do-something", "Do something", "run-javascript", Risk.CRITICAL, id="unsure-is-critical"),
        pytest.param("get-lead-export", "Get export", "run-javascript", Risk.CRITICAL, id="read-name-odd-type"),
    ],
)
def test_unknown_actions_are_classed_by_type_and_words_and_never_guessed_low(
    key: str, name: str, kind: str | None, risk: Risk
) -> None:
    assert classify_action(key, name, kind)[0] is risk


def test_the_commands_in_a_form_body_are_read_in_order() -> None:
    body = phpform.encode(
        {
            "lead": {"email": "a@example.com"},
            "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "refund_transaction"}],
        }
    )
    found = invocations_in_body(body)
    assert found is not None
    assert [(i.cmd, i.risk) for i in found] == [("assign_tag", Risk.WRITE), ("refund_transaction", Risk.CRITICAL)]
    assert found[0].lead == {"email": "a@example.com"}


def test_json_and_object_bodies_are_read_too() -> None:
    as_object = invocations_in_body({"get_lead": {"email": "a@example.com"}})
    as_json = invocations_in_body('{"actions": [{"cmd": "cancel_transaction"}]}', "application/json")
    assert as_object is not None and [i.cmd for i in as_object] == ["get_lead"]
    assert as_json is not None and [i.risk for i in as_json] == [Risk.CRITICAL]


def test_an_unknown_command_is_critical_and_an_unreadable_body_is_unknown() -> None:
    found = invocations_in_body("actions[0][cmd]=wipe_account")
    assert found is not None and found[0].risk is Risk.CRITICAL
    assert invocations_in_body("{not json", "application/json") is None


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
