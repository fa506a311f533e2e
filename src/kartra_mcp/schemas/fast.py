"""A quick yes for arguments that plainly pass their schema, before the full validator is asked.

jsonschema walks a schema through its generic machinery on every call, about ten times the time a
check written for that schema takes. `accepts(schema)` compiles a schema once into such a check,
for the keywords the catalog's schemas use (type, properties, required, additionalProperties,
items, enum, const, anyOf, format, lengths, bounds, pattern). The check only ever says "valid" or
"ask jsonschema": any other keyword, and any doubt (a value that merely might be wrong), goes to
the full validator, which also says what is wrong. So it can make a call faster, never let through
what jsonschema refuses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the first check is compiled, as in `schemas.validate`
    from jsonschema import FormatChecker

Check = Callable[[Any], bool]

# Annotations only: they never make a value invalid.
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "deprecated", "readOnly"})
_KNOWN = _ANNOTATIONS | {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "format",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
    "minItems", "maxItems",
}  # fmt: skip


@cache
def _formats() -> FormatChecker:
    from jsonschema import FormatChecker

    return FormatChecker()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, for scalars (1 is not true, 1.0 is 1); anything else is left to jsonschema."""
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class _Unsupported(Exception):
    """The schema uses what the quick check does not know."""


def _compile(schema: Any) -> Check:
    """A check that says True only when `schema` surely accepts a value.

    Raises:
        _Unsupported: the schema uses a keyword (or a form of one) the quick check does not know.
    """
    if schema is True or schema == {}:
        return lambda v: True
    if schema is False or not isinstance(schema, Mapping) or not set(schema) <= _KNOWN:
        raise _Unsupported
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not all(isinstance(k, str) and k in _TYPES for k in kinds):
            raise _Unsupported
        of_type = [_TYPES[k] for k in kinds]
        checks.append(lambda v: any(t(v) for t in of_type))
    if "enum" in schema:
        options = schema["enum"]
        if not isinstance(options, list):
            raise _Unsupported
        checks.append(lambda v: any(_same(v, option) for option in options))
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v: _same(v, const))
    if "anyOf" in schema:
        if not isinstance(schema["anyOf"], list):
            raise _Unsupported
        branches = [_compile(b) for b in schema["anyOf"]]
        checks.append(lambda v: any(b(v) for b in branches))
    if "format" in schema:
        form, formats = schema["format"], _formats()
        checks.append(lambda v: formats.conforms(v, form))
    _add_bounds(schema, checks)
    if {"properties", "required", "additionalProperties"} & set(schema):
        checks.append(_object_check(schema))
    if "items" in schema:
        item = _compile(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(i) for i in v))
    return lambda v: all(check(v) for check in checks)


def _add_bounds(schema: Mapping[str, Any], checks: list[Check]) -> None:
    """Lengths, bounds and pattern, each applying only to its own kind of value (as in JSON Schema)."""
    for word in ("minLength", "maxLength", "minItems", "maxItems"):
        if word in schema and not (isinstance(schema[word], int) and not isinstance(schema[word], bool)):
            raise _Unsupported
    for word in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if word in schema and not (_is_number(schema[word]) and math.isfinite(schema[word])):
            raise _Unsupported
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "minLength" in schema or "maxLength" in schema:
        checks.append(lambda v: not isinstance(v, str) or (low <= len(v) and (high is None or len(v) <= high)))
    fewest, most = schema.get("minItems", 0), schema.get("maxItems")
    if "minItems" in schema or "maxItems" in schema:
        checks.append(lambda v: not isinstance(v, list) or (fewest <= len(v) and (most is None or len(v) <= most)))
    bounds = [(schema.get(w), w) for w in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
    if any(b is not None for b, _ in bounds):
        checks.append(lambda v: not _is_number(v) or all(_within(v, b, w) for b, w in bounds if b is not None))
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _Unsupported
        try:
            pattern = re.compile(schema["pattern"])
        except re.error:
            raise _Unsupported from None
        checks.append(lambda v: not isinstance(v, str) or pattern.search(v) is not None)


def _within(value: float, bound: float, word: str) -> bool:
    if word == "minimum":
        return value >= bound
    if word == "maximum":
        return value <= bound
    if word == "exclusiveMinimum":
        return value > bound
    return value < bound


def _object_check(schema: Mapping[str, Any]) -> Check:
    """The check of an object's members: properties, required, additionalProperties."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        raise _Unsupported
    members = {name: _compile(sub) for name, sub in properties.items()}
    closed = schema.get("additionalProperties") is False
    extra = None if closed or "additionalProperties" not in schema else _compile(schema["additionalProperties"])

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in required:
            if name not in value:
                return False
        for name, inner in value.items():
            member = members.get(name)
            if member is not None:
                if not member(inner):
                    return False
            elif closed or (extra is not None and not extra(inner)):
                return False
        return True

    return check


def accepts(schema: Mapping[str, Any]) -> Check | None:
    """The quick check for `schema` (see the module's docstring), or None when only jsonschema can tell."""
    try:
        return _compile(schema)
    except (_Unsupported, RecursionError):
        return None
