"""Membrane's schema quirks, one by one, and what every client gets instead."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from kartra_mcp.sandbox.actions import CATALOG
from kartra_mcp.schemas import MINIMAL_SCHEMA, normalize_input_schema, normalize_output_schema


def _every_node(schema: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        nodes.append(schema)
        for key in ("properties",):
            for child in (schema.get(key) or {}).values():
                nodes.extend(_every_node(child))
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                nodes.extend(_every_node(schema[key]))
        for key in ("anyOf", "oneOf"):
            for child in schema.get(key) or ():
                nodes.extend(_every_node(child))
    return nodes


def test_no_schema_means_an_object_that_takes_no_arguments() -> None:
    result = normalize_input_schema(None)
    assert result.schema == {"type": "object", "properties": {}, "additionalProperties": False}
    assert result.warnings == []


def test_membranes_own_keys_are_dropped_and_descriptions_enums_defaults_kept() -> None:
    raw = {
        "type": "object",
        "isImplied": True,
        "properties": {
            "tag": {"type": "string", "description": "The tag.", "referenceCollection": {"key": "tags"}},
            "kind": {"type": "string", "enum": ["a", "b"], "default": "a", "isSensitive": True},
        },
        "required": ["tag"],
    }
    schema = normalize_input_schema(raw).schema
    assert schema == {
        "type": "object",
        "properties": {
            "tag": {"type": "string", "description": "The tag."},
            "kind": {"type": "string", "enum": ["a", "b"], "default": "a"},
        },
        "required": ["tag"],
        "additionalProperties": False,
    }


def test_an_array_without_items_gets_text_items_and_a_warning() -> None:
    result = normalize_input_schema({"type": "object", "properties": {"names": {"type": "array"}}})
    assert result.schema["properties"]["names"] == {"type": "array", "items": {"type": "string"}}
    assert any("without items" in w for w in result.warnings)


def test_references_into_definitions_are_inlined() -> None:
    raw = {
        "type": "object",
        "definitions": {"pair": {"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]}},
        "properties": {"pairs": {"type": "array", "items": {"$ref": "#/definitions/pair"}}},
    }
    schema = normalize_input_schema(raw).schema
    assert schema["properties"]["pairs"]["items"] == {
        "type": "object",
        "properties": {"k": {"type": "string"}},
        "required": ["k"],
    }
    assert "definitions" not in schema
    assert "$ref" not in str(schema)


def test_a_reference_to_itself_ends_in_a_plain_object() -> None:
    raw = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    result = normalize_input_schema(raw)
    assert result.schema["properties"]["child"]["properties"]["child"]["type"] == "object"
    assert any("refers to itself" in w for w in result.warnings)


def test_an_unresolvable_reference_takes_text() -> None:
    result = normalize_input_schema({"type": "object", "properties": {"x": {"$ref": "#/definitions/missing"}}})
    assert result.schema["properties"]["x"]["type"] == "string"
    assert any("cannot be resolved" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param({"enum": ["x", "y"]}, "string", id="from-enum"),
        pytest.param({"properties": {"a": {"type": "string"}}}, "object", id="from-properties"),
        pytest.param({"items": {"type": "string"}}, "array", id="from-items"),
        pytest.param({"default": 3}, "integer", id="from-default"),
        pytest.param({"type": "int"}, "integer", id="alias-int"),
        pytest.param({"type": "datetime"}, "string", id="alias-datetime"),
        pytest.param({"type": "decimal"}, "number", id="alias-decimal"),
        pytest.param({"description": "no type at all"}, "string", id="nothing-to-go-on"),
    ],
)
def test_every_property_gets_a_type(node: dict[str, Any], expected: str) -> None:
    schema = normalize_input_schema({"type": "object", "properties": {"p": node}}).schema
    assert schema["properties"]["p"]["type"] == expected


def test_a_root_union_is_merged_into_one_object() -> None:
    raw = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"email": {"type": "string"}, "x": {"type": "string"}},
                "required": ["email", "x"],
            },
            {"type": "object", "properties": {"lead_id": {"type": "string"}}, "required": ["lead_id", "x"]},
        ]
    }
    result = normalize_input_schema(raw)
    assert "anyOf" not in result.schema
    assert set(result.schema["properties"]) == {"email", "x", "lead_id"}
    assert result.schema["required"] == ["x"]  # only what every branch needs


def test_unions_below_the_root_are_kept_with_their_branches_typed() -> None:
    raw = {"type": "object", "properties": {"v": {"anyOf": [{"type": "string"}, {"type": "array"}]}}}
    schema = normalize_input_schema(raw).schema
    assert schema["properties"]["v"] == {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def test_a_non_object_input_is_wrapped_in_one_argument() -> None:
    result = normalize_input_schema({"type": "string", "description": "An email."})
    assert result.wrapped == "input"
    assert result.schema["properties"]["input"] == {"type": "string", "description": "An email."}
    assert result.schema["required"] == ["input"]


def test_draft_4_exclusive_bounds_become_numbers() -> None:
    raw = {"type": "object", "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}}
    assert normalize_input_schema(raw).schema["properties"]["n"] == {"type": "number", "exclusiveMinimum": 0}


def test_a_schema_that_cannot_be_made_valid_falls_back_to_the_minimal_one() -> None:
    raw = {"type": "object", "properties": {"n": {"type": "string", "pattern": "("}}}
    result = normalize_input_schema(raw)
    assert result.schema == MINIMAL_SCHEMA
    assert result.warnings


def test_a_schema_that_is_not_an_object_falls_back_to_the_minimal_one() -> None:
    result = normalize_input_schema(["not", "a", "schema"])
    assert result.schema == MINIMAL_SCHEMA
    assert result.warnings


def test_required_names_only_properties_that_exist() -> None:
    schema = normalize_input_schema(
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "ghost", 7]}
    ).schema
    assert schema["required"] == ["a"]


@pytest.mark.parametrize("action", CATALOG, ids=lambda a: a.key)
def test_every_sandbox_action_becomes_a_valid_schema_typed_everywhere_without_refs(action: Any) -> None:
    schema = normalize_input_schema(action.input_schema).schema
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    for node in _every_node(schema)[1:]:
        assert "type" in node or "anyOf" in node
        if node.get("type") == "array":
            assert "items" in node
    assert "$ref" not in str(schema)
    assert not {"referenceCollection", "isImplied", "isSensitive"} & set(str(schema).split("'"))


def test_an_output_schema_describes_without_constraining() -> None:
    raw = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "tags": {"type": "array"}, "status": {"enum": ["ok"]}},
        "required": ["id"],
        "additionalProperties": False,
    }
    schema = normalize_output_schema(raw)
    assert schema is not None
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"id": "17", "tags": [{"tag_id": "1"}], "status": "Error", "extra": 1})
    assert validator.is_valid({"id": None, "tags": [], "status": 3})


def _type_arrays(node: Any) -> list[Any]:
    if isinstance(node, dict):
        here = [node["type"]] if isinstance(node.get("type"), list) else []
        return here + [t for value in node.values() for t in _type_arrays(value)]
    if isinstance(node, list):
        return [t for value in node for t in _type_arrays(value)]
    return []


def test_output_scalars_leave_no_type_arrays_and_keep_their_descriptions_in_the_container() -> None:
    raw = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "description": "Success or Error.", "enum": ["Success", "Error"]},
            "lead": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City."},
                    "score": {"type": "integer", "description": "Points."},
                    "tags": {"type": "array", "description": "Tags: tag_id, tag_name."},
                    "note": {"type": "string", "nullable": True},
                },
            },
        },
    }

    schema = normalize_output_schema(raw)

    assert schema == {
        "type": "object",
        "description": "status (Success or Error)",
        "properties": {
            "lead": {
                "type": "object",
                "description": "city; score (Points); tags (list: Tags: tag_id, tag_name)",
                # a declared nullable stays checked, spelled as single-type branches
                "properties": {"note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            }
        },
    }


def test_no_output_schema_of_the_sandbox_catalog_has_a_type_array() -> None:
    schemas = [normalize_output_schema(action.output_schema) for action in CATALOG]

    assert any(schemas)
    assert [t for schema in schemas for t in _type_arrays(schema)] == []


@pytest.mark.parametrize("raw", [None, {"type": "array"}, {"type": "string"}, "text"])
def test_only_object_outputs_are_advertised(raw: Any) -> None:
    assert normalize_output_schema(raw) is None
