from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from kartra_mcp.errors import PolicyError
from kartra_mcp.schemas import POLICY_SCHEMA_PATH
from kartra_mcp.tools.policy import Policy, Target, load_policy
from kartra_mcp.tools.spec import Risk

EXAMPLE = """
read_only = false
on_unconfirmable = "refuse"
confirmation_ttl_seconds = 120

[classes]
write = "confirm"
destructive = "confirm"

[actions]
"refund-transaction" = "deny"
"get-lead" = "confirm"

[limits]
max_refund_amount = 150.0
max_critical_calls_per_hour = 3
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_the_defaults_allow_reads_and_writes_and_confirm_the_rest() -> None:
    policy = Policy()
    assert [policy.decide("t", [Target(None, r)]).mode for r in Risk] == ["allow", "allow", "confirm", "confirm"]


def test_a_policy_file_sets_classes_actions_limits_and_fallback(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, EXAMPLE))
    assert policy.decide("assign-tag", [Target("assign-tag", Risk.WRITE)]).mode == "confirm"
    assert policy.decide("get-lead", [Target("get-lead", Risk.READ)]).mode == "confirm"
    denied = policy.decide("refund-transaction", [Target("refund-transaction", Risk.CRITICAL)])
    assert denied.mode == "deny" and "refund-transaction" in denied.reason
    assert (policy.max_refund_amount, policy.max_critical_calls_per_hour) == (150.0, 3)
    assert (policy.on_unconfirmable, policy.confirmation_ttl) == ("refuse", 120)


def test_an_action_entry_also_governs_that_command_inside_a_proxy_request() -> None:
    policy = Policy(actions={"refund-transaction": "deny"})
    targets = [Target("assign-tag", Risk.WRITE), Target("refund-transaction", Risk.CRITICAL)]
    assert policy.decide("kartra-api-request", targets).mode == "deny"


def test_the_most_restrictive_target_wins() -> None:
    targets = [Target("get-lead", Risk.READ), Target("unassign-tag", Risk.DESTRUCTIVE)]
    assert Policy().decide("kartra-api-request", targets).mode == "confirm"


@pytest.mark.parametrize("switch", ["read_only", "kill_switch"])
def test_read_only_and_the_kill_switch_deny_and_hide_everything_but_reads(switch: str) -> None:
    policy = Policy(**{switch: True})  # type: ignore[arg-type]
    assert policy.decide("assign-tag", [Target("assign-tag", Risk.WRITE)]).mode == "deny"
    assert policy.decide("get-lead", [Target("get-lead", Risk.READ)]).mode == "allow"
    assert not policy.visible("assign-tag", Risk.WRITE, "assign-tag")
    assert policy.visible("get-lead", Risk.READ, "get-lead")


def test_overrides_from_settings_can_only_make_the_policy_stricter() -> None:
    strict = Policy(read_only=True).with_overrides(read_only=False, kill_switch=True)
    assert strict.read_only and strict.kill_switch


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        pytest.param('[classes]\ncritical = "maybe"', "classes.critical", '"allow", "confirm", "deny"', id="enum"),
        pytest.param("read_only = 1", "read_only", "a boolean", id="type"),
        pytest.param('[actions]\n"get-lead" = 3', "actions.get-lead", '"allow", "confirm", "deny"', id="mode-type"),
        pytest.param("readonly = true", "readonly", "unknown key", id="typo"),
        pytest.param("[limits]\nmax_refund_amount = -5", "limits.max_refund_amount", "exclusiveMinimum", id="bound"),
        pytest.param("[classes\nread = 1", "(syntax)", "valid TOML", id="syntax"),
        pytest.param('[risk]\n"lookup-order" = "reed"', "risk.lookup-order", '"read", "write"', id="risk-class"),
        pytest.param('[risk]\n"lookup-order" = 1', "risk.lookup-order", '"destructive", "critical"', id="risk-type"),
        pytest.param(
            '[risk]\n"refund-transaction" = "read"', "risk.refund-transaction", "never lower", id="risk-lowers-known"
        ),
        pytest.param('[actions]\n"confirm-action" = "confirm"', "actions.confirm-action", '"deny"', id="confirm-tool"),
        pytest.param('[actions]\n"run-action" = "confirm"', "actions.run-action", '"deny"', id="run-tool"),
    ],
)
def test_an_invalid_policy_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert raised.value.path == str(path)
    assert raised.value.key == key
    assert expected in raised.value.expected


def test_a_missing_policy_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        load_policy(tmp_path / "nope.toml")


def test_the_shipped_policy_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads(POLICY_SCHEMA_PATH.read_text()))


def test_action_entries_that_match_nothing_are_reported() -> None:
    policy = Policy(actions={"revoke-membership-acess": "deny", "get-lead": "confirm"})
    assert policy.unknown_actions({"get-lead", "revoke-membership-access"}) == ["revoke-membership-acess"]


def test_the_risk_table_classes_a_persons_own_actions_and_may_raise_known_ones(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, '[risk]\n"lookup-order" = "read"\n"assign-tag" = "critical"'))
    assert dict(policy.risk) == {"lookup-order": Risk.READ, "assign-tag": Risk.CRITICAL}
    assert policy.unknown_actions({"assign-tag"}) == ["lookup-order"]


def test_denying_confirm_action_means_no_confirmation_id_is_ever_issued(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, '[actions]\n"confirm-action" = "deny"'))
    assert policy.on_unconfirmable == "refuse"
