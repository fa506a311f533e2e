"""The quick check says yes only where jsonschema does, and covers the catalog's schemas."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from kartra_mcp.schemas.fast import accepts
from kartra_mcp.server.runtime import Runtime

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 1.5, -2.0]),
    st.sampled_from(["", "a", "ab"]),
)
_VALUES = st.recursive(
    _SCALARS | st.sampled_from(["x@example.com", "not an email", "2026-01-01", "12"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=8,
)
_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "object", "array", "null"])


def _schemas() -> st.SearchStrategy[Any]:
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "type": _TYPES | st.lists(_TYPES, min_size=1, max_size=3, unique=True),
            "enum": st.lists(_SCALARS, min_size=1, max_size=3),
            "const": _SCALARS,
            "format": st.sampled_from(["email", "date", "uri", "unknown-format"]),
            "minLength": st.integers(0, 2),
            "maxLength": st.integers(0, 2),
            "minimum": st.integers(-2, 2),
            "exclusiveMaximum": st.sampled_from([0, 1.5, 3]),
            "pattern": st.sampled_from(["^a", "b$", "[0-9]"]),
            "minItems": st.integers(0, 2),
            "maxItems": st.integers(0, 2),
            "description": st.just("said"),
        },
    )

    def nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.fixed_dictionaries(
            {},
            optional={
                "type": _TYPES,
                "properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
                "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
                "additionalProperties": st.booleans() | inner,
                "items": inner,
                "anyOf": st.lists(inner, min_size=1, max_size=2),
            },
        )

    return st.recursive(leaf | st.booleans(), nested, max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(schema=_schemas(), value=_VALUES)
def test_a_quick_yes_is_always_a_yes_of_jsonschema(schema: Any, value: Any) -> None:
    check = accepts(schema) if isinstance(schema, dict) else None
    if check is not None and check(value):
        assert Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(value)


def test_keywords_it_does_not_know_leave_the_answer_to_jsonschema() -> None:
    assert accepts({"type": "object", "patternProperties": {"^a": {"type": "string"}}}) is None
    assert accepts({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}}) is None
    assert accepts({"oneOf": [{"type": "string"}]}) is None


async def test_every_catalog_schema_has_a_quick_check_that_accepts_a_plain_call(runtime: Runtime) -> None:
    specs = runtime.executor.catalog.specs
    assert all(accepts(s.input_schema) is not None for s in specs)
    assert all(accepts(s.output_schema) is not None for s in specs if s.output_schema is not None)
    get_lead = runtime.executor.catalog.get("get-lead")
    assert get_lead is not None
    check = accepts(get_lead.input_schema)
    assert check is not None and check({"email": "ann@example.com"})
    assert not check({"email": "not an email"})  # the full validator then says what is wrong
    assert not check({"email": "ann@example.com", "mail": "x"})
