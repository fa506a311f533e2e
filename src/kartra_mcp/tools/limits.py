"""Bounds on what a call may carry: its size, and how deep its JSON nests.

Kartra's fields are short and shallow, so anything near these bounds is a mistake or an attack:
it is refused at the call boundary with the bound named, before it is parsed further, previewed,
stored or sent. Checks are iterative, so no input can exhaust the interpreter's stack.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kartra_mcp.errors import ArgumentProblem, InvalidArgumentsError

MAX_ARGUMENT_BYTES = 64 * 1024
MAX_DEPTH = 32


def depth_of(value: Any) -> int:
    """How deep objects and arrays nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def text_depth(text: str) -> int:
    """How deep brackets nest in JSON text, outside its strings."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_bounds(tool: str, arguments: Mapping[str, Any]) -> None:
    """Refuse arguments that nest deeper than `MAX_DEPTH` or take more than `MAX_ARGUMENT_BYTES` as JSON."""
    if depth_of(arguments) > MAX_DEPTH:
        raise InvalidArgumentsError(
            tool, [ArgumentProblem("(arguments)", f"nest deeper than {MAX_DEPTH} levels; Kartra's fields never do")]
        )
    size = len(json.dumps(arguments, default=str).encode())
    if size > MAX_ARGUMENT_BYTES:
        raise InvalidArgumentsError(
            tool,
            [
                ArgumentProblem(
                    "(arguments)",
                    f"take {size} bytes as JSON, more than the bound of {MAX_ARGUMENT_BYTES}; "
                    "send less (Kartra's fields are short)",
                )
            ],
        )


def loads(text: str, *, tool: str, where: str) -> Any:
    """Parse JSON text given inside an argument, refusing nesting past `MAX_DEPTH` before parsing.

    Raises:
        InvalidArgumentsError: too deep, or not JSON.
    """
    if text_depth(text) > MAX_DEPTH:
        raise InvalidArgumentsError(
            tool, [ArgumentProblem(where, f"nests deeper than {MAX_DEPTH} levels; Kartra's fields never do")]
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentsError(tool, [ArgumentProblem(where, f"is not valid JSON ({exc})")]) from None
