from typing import Any

from hypothesis import given, strategies as st

from kartra_mcp import phpform

_keys = st.text(alphabet="abcxyz_-09", min_size=1, max_size=6).filter(lambda k: not k.isdigit())
# Leaves include the characters a form body must escape.
_leaves = st.text(alphabet="az09 &=[]%+?#/é\"'", max_size=10)
_values = st.recursive(_leaves, lambda inner: st.dictionaries(_keys, inner, min_size=1, max_size=3), max_leaves=12)


@given(st.dictionaries(_keys, _values, max_size=4))
def test_encoding_then_decoding_gives_back_nested_strings(value: dict[str, Any]) -> None:
    assert phpform.decode(phpform.encode(value)) == value


def test_lists_are_numbered_and_read_back_in_order() -> None:
    body = phpform.encode({"actions": [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "give_points_to_lead"}]})
    assert body == (
        "actions%5B0%5D%5Bcmd%5D=assign_tag&actions%5B0%5D%5Btag_name%5D=VIP&actions%5B1%5D%5Bcmd%5D=give_points_to_lead"
    )
    actions = phpform.as_list(phpform.decode(body)["actions"])
    assert actions == [{"cmd": "assign_tag", "tag_name": "VIP"}, {"cmd": "give_points_to_lead"}]


def test_scalars_are_written_as_php_writes_them() -> None:
    assert phpform.encode_pairs({"a": True, "b": False, "c": None, "d": 2.5, "e": 3}) == [
        ("a", "1"),
        ("b", "0"),
        ("c", ""),
        ("d", "2.5"),
        ("e", "3"),
    ]


def test_empty_brackets_append_like_php() -> None:
    assert phpform.decode("x[]=a&x[]=b&y=1") == {"x": {"0": "a", "1": "b"}, "y": "1"}


def test_as_list_keeps_a_named_mapping_whole() -> None:
    assert phpform.as_list({"cmd": "x"}) == [{"cmd": "x"}]
    assert phpform.as_list(None) == []
    assert phpform.as_list("one") == ["one"]
