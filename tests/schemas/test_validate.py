"""Argument checks say where each problem is and what was expected there."""

from __future__ import annotations

from typing import Any

import pytest

from kartra_mcp.errors import InvalidArgumentsError
from kartra_mcp.schemas import argument_problems, check_arguments, checked_arguments

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "format": "email", "description": "The lead's email."},
        "refund_amount": {"type": "number", "exclusiveMinimum": 0},
        "kind": {"type": "string", "enum": ["pause", "cancel"]},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field_identifier": {"type": "string"},
                    "field_value": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                },
                "required": ["field_identifier"],
            },
        },
    },
    "required": ["email"],
    "additionalProperties": False,
}


def _problems(arguments: Any) -> dict[str, str]:
    return {p.path: p.problem for p in argument_problems(SCHEMA, arguments)}


def test_good_arguments_have_no_problems() -> None:
    assert _problems({"email": "a@example.com", "refund_amount": 5, "fields": [{"field_identifier": "x"}]}) == {}


def test_a_missing_required_argument_is_named_with_its_description() -> None:
    assert _problems({}) == {"email": "required but missing (The lead's email.)"}


def test_an_unknown_argument_suggests_the_closest_known_one() -> None:
    assert _problems({"email": "a@example.com", "emial": "x"}) == {"emial": "unknown argument; did you mean 'email'?"}


def test_every_problem_is_reported_at_its_path() -> None:
    problems = _problems({"refund_amount": "ten", "kind": "stop", "fields": [{"field_value": 3}]})
    assert set(problems) == {"email", "refund_amount", "kind", "fields[0].field_identifier", "fields[0].field_value"}
    assert problems["refund_amount"] == 'expected a number, got a string ("ten")'
    assert problems["kind"] == 'must be one of "pause", "cancel"; got "stop"'
    assert problems["fields[0].field_value"] == "must be text or an array of strings; got 3"


def test_a_malformed_email_is_caught_before_sending() -> None:
    assert _problems({"email": "not-an-email"}) == {"email": 'must be a valid email; got "not-an-email"'}


def test_check_arguments_raises_one_error_listing_everything() -> None:
    with pytest.raises(InvalidArgumentsError) as raised:
        check_arguments("refund-transaction", SCHEMA, {"refund_amount": -1})
    assert [p.path for p in raised.value.problems] == ["email", "refund_amount"]
    assert "nothing was sent" in str(raised.value)


ID_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "lead_id": {"type": "string"},
        "amount": {"type": "number"},
        "either": {"type": ["string", "integer"]},
        "ids": {"type": "array", "items": {"type": "string"}},
        "nested": {"type": "object", "properties": {"transaction_id": {"type": "string"}}},
    },
}


def test_a_whole_number_sent_for_text_is_taken_as_its_exact_digits_everywhere_in_the_arguments() -> None:
    sent = {"lead_id": 700001, "amount": 5, "either": 7, "ids": [1, "2"], "nested": {"transaction_id": 10**20}}
    assert checked_arguments("t", ID_SCHEMA, sent) == {
        "lead_id": "700001",
        "amount": 5,
        "either": 7,
        "ids": ["1", "2"],
        "nested": {"transaction_id": "100000000000000000000"},
    }


@pytest.mark.parametrize("value", [1e20, 1.5, 700001.0, True, False])
def test_a_float_or_boolean_sent_for_text_is_refused_with_what_to_send_instead(value: Any) -> None:
    with pytest.raises(InvalidArgumentsError) as caught:
        checked_arguments("get-lead", ID_SCHEMA, {"lead_id": value})
    assert "lead_id" in str(caught.value)
    assert "in quotes (only whole numbers are taken as text)" in str(caught.value)
