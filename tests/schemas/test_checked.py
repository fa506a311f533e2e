"""Meta-schema verdicts are remembered only for schemas that passed, and only as content digests."""

from __future__ import annotations

import uuid
from typing import Any

from kartra_mcp.schemas import checked


def _fresh(kind: str = "string") -> dict[str, Any]:
    """A schema no earlier test has checked: its one property is named for this call alone."""
    return {"type": "object", "properties": {f"p-{uuid.uuid4().hex}": {"type": kind}}}


def test_an_invalid_schema_is_refused_every_time_it_is_checked() -> None:
    schema = _fresh(kind="strnig")

    first = checked.schema_problem(schema)
    again = checked.schema_problem(schema)

    assert first is not None and "strnig" in first
    assert again == first
    assert checked.passed([schema]) == []


def test_a_valid_schema_is_remembered_by_its_content() -> None:
    schema = _fresh()
    assert checked.passed([schema]) == []

    assert checked.schema_problem(schema) is None

    copy = {"properties": dict(schema["properties"]), "type": "object"}  # equal content, another object
    assert checked.passed([copy, None]) == [checked.digest(schema)]


def test_a_cache_record_is_taken_only_as_digests() -> None:
    schemas = [_fresh() for _ in range(3)]
    digests = [str(checked.digest(s)) for s in schemas]

    checked.vouch([digests[0], digests[1].upper(), digests[2][:-1], 42, None, {"d": digests[2]}])

    assert checked.passed(schemas) == [digests[0]]


def test_a_schema_that_is_not_plain_json_is_checked_but_never_remembered() -> None:
    schema: dict[str, Any] = {"type": "object", "default": {1, 2}}
    assert checked.digest(schema) is None

    assert checked.schema_problem(schema) is None

    assert checked.passed([schema]) == []
