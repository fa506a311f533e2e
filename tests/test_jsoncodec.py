"""The fast JSON codec says what the standard library says, including where orjson cannot."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from kartra_mcp.jsoncodec import Kept, compact, loads

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5) | st.booleans(), inner, max_size=4)
    ),
    max_leaves=12,
)


def _standard(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


@settings(max_examples=300, deadline=None)
@given(data=_JSON)
def test_compact_text_reads_back_as_the_standard_librarys_does(data: Any) -> None:
    assert json.loads(compact(data)) == json.loads(_standard(data))


@settings(max_examples=300, deadline=None)
@given(data=_JSON)
def test_loads_reads_what_the_standard_library_reads(data: Any) -> None:
    raw = _standard(data).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(raw)
    except ValueError:
        with pytest.raises(ValueError, match=r"."):
            loads(raw)
        return
    assert loads(raw) == expected


def test_what_orjson_refuses_goes_to_the_standard_library() -> None:
    assert compact({"n": 2**70, 1: "one", "\ud800": object}) == _standard({"n": 2**70, 1: "one", "\ud800": object})
    assert loads(b'{"n": 1180591620717411303424, "x": NaN}')["n"] == 2**70
    assert math.isnan(loads(b"NaN"))
    with pytest.raises(ValueError, match=r"Expecting value|unexpected character"):
        loads(b"not json")
    with pytest.raises(ValueError, match=r"Expecting value|empty"):
        loads(b"")
    assert loads(b"[-9223372036854775809, 18446744073709551616]") == [-(2**63) - 1, 2**64]


@settings(max_examples=300, deadline=None)
@given(data=_JSON)
def test_a_kept_value_reads_back_as_its_compact_text_does(data: Any) -> None:
    assert Kept(data).read() == json.loads(compact(data))


def test_each_read_of_a_kept_value_is_new_objects_that_the_next_read_does_not_see() -> None:
    kept = Kept({"tools": [{"name": "get-lead", "inputSchema": {"properties": {}}}]})
    first = kept.read()
    first["tools"][0]["inputSchema"]["properties"]["x"] = 1
    first["tools"].append("more")
    assert kept.read() == {"tools": [{"name": "get-lead", "inputSchema": {"properties": {}}}]}


def test_a_kept_value_orjson_would_misread_is_read_by_the_standard_library() -> None:
    assert Kept({"maximum": 2**70}).read() == {"maximum": 2**70}
    assert Kept({"text": "\ud800"}).read() == {"text": "\ud800"}
