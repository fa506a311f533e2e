"""Membrane's DataSchema in, a JSON Schema every MCP client accepts out.

Membrane's schemas are JSON-Schema-like with extras: keys of its own (`referenceCollection`,
`isImplied`, `isSensitive` …), arrays without `items`, `$ref` into `definitions`, untyped
properties, unions at the root, sometimes no schema at all. Clients are stricter (Gemini wants a
`type` everywhere and no `$ref`; Claude Code drops root unions; any invalid schema can break the
whole tool list), so an input schema becomes: an object at the root, references inlined, a `type`
on every node, `items` on every array, only standard keywords — and descriptions, enums, defaults
and `required` kept. One schema is both what is advertised and what arguments are checked against.

Output schemas are made permissive instead (no `required`, scalar leaves take any scalar), since
they describe what Kartra sends rather than constrain it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kartra_mcp.schemas.checked import schema_problem

Schema = dict[str, Any]

_KEYWORDS = frozenset(
    {
        "type", "description", "title", "enum", "const", "default", "examples", "format", "pattern",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "properties", "required",
        "items", "additionalProperties", "anyOf", "oneOf",
    }
)  # fmt: skip
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_TYPE_ALIASES = {
    "int": "integer", "float": "number", "double": "number", "decimal": "number", "bool": "boolean",
    "date": "string", "datetime": "string", "date-time": "string", "text": "string", "list": "array",
    "dict": "object", "map": "object",
}  # fmt: skip
_SCALARS = ["string", "number", "boolean", "null"]
_MAX_DEPTH = 24
MINIMAL_SCHEMA: Schema = {"type": "object", "properties": {}, "additionalProperties": True}


@dataclass
class NormalizedSchema:
    """A client-safe input schema, with what had to change to get there.

    `wrapped` names the single property an action's non-object input was wrapped in: the
    caller unwraps it before running the action.
    """

    schema: Schema
    warnings: list[str] = field(default_factory=list)
    wrapped: str | None = None


def normalize_input_schema(raw: Any) -> NormalizedSchema:
    """Turn an action's `inputSchema` (or its absence) into a strict, client-safe JSON Schema."""
    if raw is None:
        return NormalizedSchema({"type": "object", "properties": {}, "additionalProperties": False})
    if not isinstance(raw, Mapping):
        return NormalizedSchema(
            copy.deepcopy(MINIMAL_SCHEMA), [f"inputSchema is a {type(raw).__name__}, not an object"]
        )
    notes: list[str] = []
    root = _inline(dict(raw), dict(raw), (), notes, 0)
    root = _merge_root_union(root, notes)
    wrapped = None
    if not _is_object(root):
        notes.append("the input is not an object; it is wrapped as the 'input' argument")
        root = {"type": "object", "properties": {"input": root}, "required": ["input"]}
        wrapped = "input"
    schema = _clean(root, "$", notes, strict=True)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    if "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    problem = schema_problem(schema)
    if problem is not None:
        notes.append(f"the schema is invalid after normalisation ({problem}); arguments are passed unchecked")
        return NormalizedSchema(copy.deepcopy(MINIMAL_SCHEMA), notes)
    return NormalizedSchema(schema, notes, wrapped)


def normalize_output_schema(raw: Any) -> Schema | None:
    """A permissive JSON Schema describing an action's output, or None when it cannot be one.

    Only object roots are advertised (what MCP structured content needs); constraints that
    Kartra's stringly-typed answers would break are dropped.
    """
    if not isinstance(raw, Mapping):
        return None
    notes: list[str] = []
    root = _merge_root_union(_inline(dict(raw), dict(raw), (), notes, 0), notes)
    if not _is_object(root):
        return None
    schema = _clean(root, "$", notes, strict=False)
    schema["type"] = "object"
    _fold_scalars(schema)
    return None if schema_problem(schema) is not None else schema


def _is_any_scalar(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("type") == _SCALARS


def _fold_scalars(node: Schema) -> None:
    """Take the loosened scalars out of an output schema; their descriptions join their container's.

    Kartra answers a scalar as text, a number or null alike, so no single type fits, and a type
    array is not portable (clients mapping schemas to a one-type dialect, such as Gemini's, reject
    it). The container accepts any field it does not list, so validation is unchanged, and the model
    still reads what each field means; the list is a fraction of the size.
    """
    fields: list[str] = []
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name in list(properties):
            child = properties[name]
            if _is_any_scalar(child):
                del properties[name]
                fields.append(_field(name, child.get("description")))
            elif child.keys() <= {"type", "description"} and child.get("type") == "array":
                # A list of anything says no more as a schema than as a word beside its description.
                del properties[name]
                fields.append(_field(name, child.get("description"), kind="list"))
            else:
                _fold_scalars(child)
        if not properties:
            del node["properties"]
    items = node.get("items")
    if isinstance(items, dict) and _is_any_scalar(items):
        del node["items"]
        if items.get("description"):
            fields.append(f"each item: {items['description']}")
    elif isinstance(items, dict):
        _fold_scalars(items)
    for union in ("anyOf", "oneOf"):
        branches = node.get(union)
        if isinstance(branches, list):
            node[union] = [{"anyOf": [{"type": t} for t in _SCALARS]} if _is_any_scalar(b) else b for b in branches]
            for branch in branches:
                if isinstance(branch, dict) and not _is_any_scalar(branch):
                    _fold_scalars(branch)
    if isinstance(node.get("additionalProperties"), dict):
        _fold_scalars(node["additionalProperties"])
        if _is_any_scalar(node["additionalProperties"]):
            node["additionalProperties"] = True
    if isinstance(node.get("type"), list):  # nullable and the like: one single-type branch each
        node["anyOf"] = [{"type": t} for t in node.pop("type")]
    if fields:
        lead = node.get("description", "")
        node["description"] = f"{lead} {'; '.join(fields)}".strip()


def _field(name: str, description: Any, *, kind: str = "") -> str:
    """`name (description)`, or the name alone where the description only spells it out ("city": "City.")."""
    said = [kind] if kind else []
    if isinstance(description, str) and _words(description) != _words(name):
        said.append(description.rstrip("."))
    return f"{name} ({': '.join(said)})" if said else name


def _words(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _is_object(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (kind is None and isinstance(node.get("properties"), Mapping))


def _inline(node: Any, root: Mapping[str, Any], stack: tuple[str, ...], notes: list[str], depth: int) -> Any:
    """Replace every local `$ref` with a copy of its target; cycles and dead ends become plain objects."""
    if isinstance(node, list):
        return [_inline(item, root, stack, notes, depth + 1) for item in node]
    if not isinstance(node, Mapping):
        return node
    if depth > _MAX_DEPTH:
        notes.append("the schema nests too deeply; the deepest part accepts any object")
        return {"type": "object"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in stack:
            notes.append(f"{ref} refers to itself; the repeated part accepts any object")
            return {"type": "object", "description": node.get("description", "A nested copy of its parent.")}
        target = _resolve(ref, root)
        if target is None:
            notes.append(f"{ref} cannot be resolved; it accepts any text")
            return {"type": "string", "description": node.get("description", "")}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, root, (*stack, ref), notes, depth + 1)
    return {k: _inline(v, root, stack, notes, depth + 1) for k, v in node.items()}


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def _merge_root_union(root: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Fold `anyOf`/`oneOf`/`allOf` at the root into one object; many clients reject root unions."""
    merged = {k: v for k, v in root.items() if k not in ("anyOf", "oneOf", "allOf")}
    for keyword in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in root.get(keyword) or () if isinstance(b, Mapping)]
        if not branches:
            continue
        notes.append(f"the root {keyword} is merged into one object")
        properties: dict[str, Any] = dict(merged.get("properties") or {})
        for branch in branches:
            for name, prop in (branch.get("properties") or {}).items():
                properties.setdefault(name, prop)
        merged["properties"] = properties
        required = [set(b.get("required") or ()) for b in branches]
        common = set.union(*required) if keyword == "allOf" else set.intersection(*required)
        merged["required"] = sorted({*(merged.get("required") or ()), *common})
        merged.setdefault("type", "object")
    return merged


def _clean(node: Any, path: str, notes: list[str], *, strict: bool) -> Schema:
    if not isinstance(node, Mapping):
        notes.append(f"{path} is not a schema; it accepts any text")
        return {"type": "string"}
    node = dict(node)
    if "allOf" in node:
        node = _merge_root_union(node, notes)
    out: Schema = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEYWORDS}
    dropped = sorted(k for k in node if k not in _KEYWORDS and k not in ("$ref", "definitions", "$defs", "allOf"))
    if dropped and path == "$":
        notes.append(f"dropped non-standard keys at the root: {', '.join(dropped)}")
    _fix_exclusive_bounds(out, node)
    kind = _type_of(node, path, notes)
    if kind is not None:
        out["type"] = kind
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    for union in ("anyOf", "oneOf"):
        if isinstance(out.get(union), list):
            out[union] = [_clean(b, f"{path}.{union}[{i}]", notes, strict=strict) for i, b in enumerate(out[union])]
            if "type" in out and not node.get("type"):
                del out["type"]  # the branches carry the types
    declared: Any = out.get("type")
    types: list[Any] = declared if isinstance(declared, list) else [declared]
    if "object" in types:
        props = node.get("properties") if isinstance(node.get("properties"), Mapping) else {}
        out["properties"] = {
            str(name): _clean(prop, f"{path}.{name}", notes, strict=strict) for name, prop in props.items()
        }
        required = [r for r in node.get("required") or () if isinstance(r, str) and r in out["properties"]]
        if required and strict:
            out["required"] = list(dict.fromkeys(required))
        else:
            out.pop("required", None)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            out["additionalProperties"] = _clean(extra, f"{path}.*", notes, strict=strict)
        elif extra is False and not strict:
            out.pop("additionalProperties", None)
    else:
        out.pop("properties", None)
        out.pop("required", None)
    if "array" in types:
        items = node.get("items")
        if isinstance(items, list):  # draft-4 tuple form: keep the first item's shape
            items = items[0] if items else None
        if isinstance(items, Mapping):
            out["items"] = _clean(items, f"{path}[]", notes, strict=strict)
        elif strict:
            notes.append(f"{path} is an array without items; its items are taken as text")
            out["items"] = {"type": "string"}
        else:
            out.pop("items", None)  # an output array of anything: describe it, do not constrain it
    else:
        out.pop("items", None)
    if not strict:
        _loosen(out)
    return out


def _type_of(node: Mapping[str, Any], path: str, notes: list[str]) -> str | list[str] | None:
    """The node's JSON type: declared (aliases mapped), or inferred from its other keywords."""
    declared = node.get("type")
    if isinstance(declared, list):
        kinds = [_TYPE_ALIASES.get(str(t), str(t)) for t in declared]
        return [k for k in kinds if k in _TYPES] or "string"
    if isinstance(declared, str):
        kind = _TYPE_ALIASES.get(declared, declared)
        if kind in _TYPES:
            return kind
        notes.append(f"{path} has the unknown type {declared!r}; it accepts text")
        return "string"
    if "anyOf" in node or "oneOf" in node:
        return None
    if isinstance(node.get("properties"), Mapping):
        return "object"
    if "items" in node:
        return "array"
    enum = node.get("enum")
    sample = enum[0] if isinstance(enum, list) and enum else node.get("const", node.get("default"))
    inferred = {bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}.get(type(sample))
    if inferred is None:
        if sample is None and path != "$":
            notes.append(f"{path} has no type; it is taken as text")
        return "string"
    return inferred


def _fix_exclusive_bounds(out: Schema, node: Mapping[str, Any]) -> None:
    """Draft-4 boolean `exclusiveMinimum/Maximum` become the numbers 2020-12 expects."""
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = node.get(exclusive)
        if isinstance(flag, bool):
            out.pop(exclusive, None)
            if flag and isinstance(node.get(bound), int | float):
                out[exclusive] = out.pop(bound)


def _loosen(out: Schema) -> None:
    kind = out.get("type")
    if kind in ("string", "number", "integer", "boolean", "null"):
        out["type"] = list(_SCALARS)
        for key in ("enum", "const", "format", "pattern", "minimum", "maximum", "exclusiveMinimum",
                    "exclusiveMaximum", "minLength", "maxLength", "multipleOf"):  # fmt: skip
            out.pop(key, None)
    for key in ("minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties"):
        out.pop(key, None)
