from __future__ import annotations

import json

import pytest

from kartra_mcp.errors import InvalidArgumentsError
from kartra_mcp.tools.limits import MAX_ARGUMENT_BYTES, MAX_DEPTH, check_bounds, depth_of, loads, text_depth


def test_depth_is_measured_without_recursion_however_deep_the_value() -> None:
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    assert depth_of(deep) > MAX_DEPTH
    assert depth_of({"a": [1, {"b": 2}]}) == 3


def test_brackets_inside_json_strings_do_not_count_as_nesting() -> None:
    assert text_depth(json.dumps({"note": '[[[[{{{{ \\" ]]'})) == 1
    assert text_depth("[" * 50 + "]" * 50) == 50


def test_json_text_nested_past_the_bound_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(InvalidArgumentsError, match=f"deeper than {MAX_DEPTH}"):
        loads("[" * 100_000 + "]" * 100_000, tool="run-action", where="input")
    assert loads('{"a": [1]}', tool="run-action", where="input") == {"a": [1]}


def test_arguments_past_the_size_bound_are_refused_naming_it() -> None:
    with pytest.raises(InvalidArgumentsError, match=f"bound of {MAX_ARGUMENT_BYTES}"):
        check_bounds("edit-lead", {"notes": "x" * MAX_ARGUMENT_BYTES})
    check_bounds("edit-lead", {"notes": "x" * (MAX_ARGUMENT_BYTES // 2)})
