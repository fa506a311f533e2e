"""Check tool arguments against the schema the tool advertises, and say precisely what is wrong."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kartra_mcp.errors import ArgumentProblem, InvalidArgumentsError
from kartra_mcp.schemas.fast import Check, accepts

if TYPE_CHECKING:  # imported when the first validator is compiled: listing tools needs none
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

_JSON_TYPES = {
    str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
    dict: "an object", type(None): "null",
}  # fmt: skip
_EXPECTED = {
    "string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
    "object": "an object", "array": "an array", "null": "null",
}  # fmt: skip


# Compiled validators (and quick checks, see `schemas.fast`) by schema identity: tool schemas live as
# long as their tools, and compiling costs far more than validating.
_COMPILED: dict[int, tuple[Mapping[str, Any], Draft202012Validator, Check | None]] = {}


def _compiled(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], Draft202012Validator, Check | None]:
    hit = _COMPILED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit
    if len(_COMPILED) >= 2048:
        _COMPILED.clear()
    from jsonschema import Draft202012Validator, FormatChecker

    compiled = _COMPILED[id(schema)] = (
        schema,
        Draft202012Validator(schema, format_checker=FormatChecker()),
        accepts(schema),
    )
    return compiled


def argument_problems(schema: Mapping[str, Any], arguments: Any) -> list[ArgumentProblem]:
    """Every problem with `arguments` under `schema`, one per path, in a stable order."""
    _, validator, quick = _compiled(schema)
    if quick is not None and quick(arguments):
        return []
    problems: dict[tuple[str, str], ArgumentProblem] = {}
    for error in validator.iter_errors(arguments):
        for problem in _describe(error, schema):
            problems.setdefault((problem.path, problem.problem), problem)
    return sorted(problems.values(), key=lambda p: (p.path, p.problem))


def check_arguments(tool: str, schema: Mapping[str, Any], arguments: Any) -> None:
    """Raise `InvalidArgumentsError` listing every problem, if there is any."""
    problems = argument_problems(schema, arguments)
    if problems:
        raise InvalidArgumentsError(tool, problems)


def checked_arguments(tool: str, schema: Mapping[str, Any], arguments: Any) -> Any:
    """The arguments with whole numbers sent for text taken as their digits, once they pass the schema.

    Clients (the MCP Inspector, models) often send `700001` where the schema says `"700001"`. An
    integer's decimal digits are exactly what was meant; a float (`1e20`, `1.5`) or a boolean is
    not taken, because its text form would not be what the person typed.
    """
    coerced = integers_as_text(schema, arguments)
    check_arguments(tool, schema, coerced)
    return coerced


def integers_as_text(schema: Any, value: Any) -> Any:
    """`value` with every integer that stands where `schema` wants only text replaced by its digits."""
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if _wants_only_text(schema.get("type")) else value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {k: integers_as_text(properties.get(k, extra), v) for k, v in value.items()}
    if isinstance(value, list):
        return [integers_as_text(schema.get("items"), v) for v in value]
    return value


def _wants_only_text(kind: Any) -> bool:
    kinds = kind if isinstance(kind, list) else [kind]
    return "string" in kinds and not {"integer", "number"} & set(kinds)


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(arguments)"


def _subschema(schema: Mapping[str, Any], parts: Iterable[Any]) -> Mapping[str, Any]:
    node: Any = schema
    for part in parts:
        if not isinstance(node, Mapping):
            return {}
        node = node.get("items", {}) if isinstance(part, int) else (node.get("properties") or {}).get(part, {})
    return node if isinstance(node, Mapping) else {}


def _describe(error: ValidationError, root: Mapping[str, Any]) -> list[ArgumentProblem]:
    where = list(error.absolute_path)
    here = _path(where)
    kind = error.validator
    instance: Any = error.instance
    expected_value: Any = error.validator_value
    if kind == "required":
        parent = _subschema(root, where)
        properties = parent.get("properties") or {}
        missing = [name for name in parent.get("required") or () if name not in (instance or {})]
        out = []
        for name in missing:
            hint = (properties.get(name) or {}).get("description")
            text = "required but missing" + (f" ({hint})" if hint else "")
            out.append(ArgumentProblem(_path([*where, name]), text))
        return out
    if kind == "additionalProperties":
        parent = _subschema(root, where)
        known = sorted((parent.get("properties") or {}).keys())
        extra = [name for name in instance if name not in known] if isinstance(instance, dict) else []
        out = []
        for name in extra:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else (f"known: {', '.join(known)}" if known else "none taken")
            out.append(ArgumentProblem(_path([*where, name]), f"unknown argument; {hint}"))
        return out
    if kind == "type":
        wanted = expected_value if isinstance(expected_value, list) else [expected_value]
        expected = " or ".join(_EXPECTED.get(str(w), str(w)) for w in wanted)
        got = _JSON_TYPES.get(type(instance), type(instance).__name__)
        hint = ""
        if "string" in wanted and isinstance(instance, (bool, float)):
            # Whole numbers are taken as their digits; these have no one exact text form.
            hint = "; send the exact text meant, in quotes (only whole numbers are taken as text)"
        return [ArgumentProblem(here, f"expected {expected}, got {got} ({_show(instance)}){hint}")]
    if kind == "enum":
        options = ", ".join(json.dumps(v) for v in expected_value)
        return [ArgumentProblem(here, f"must be one of {options}; got {_show(instance)}")]
    if kind in ("anyOf", "oneOf"):
        shapes = [_shape(branch) for branch in expected_value]
        return [ArgumentProblem(here, f"must be {' or '.join(shapes)}; got {_show(instance)}")]
    if kind == "format":
        return [ArgumentProblem(here, f"must be a valid {expected_value}; got {_show(instance)}")]
    return [ArgumentProblem(here, error.message)]


def _shape(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "a value"
    kind = schema.get("type")
    if kind == "array":
        return f"an array of {_shape(schema.get('items', {}))}".replace("of text", "of strings")
    return _EXPECTED.get(str(kind), "a value")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
