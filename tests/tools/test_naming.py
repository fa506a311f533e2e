from __future__ import annotations

import re

import pytest

from kartra_mcp.tools.naming import MAX_LENGTH, tool_name

_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@pytest.mark.parametrize("key", ["get-lead", "refund-transaction", "a_b.c", "x" * MAX_LENGTH])
def test_a_valid_key_is_its_own_name(key: str) -> None:
    assert tool_name(key) == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("get lead", id="space"),
        pytest.param("repos/{owner}/issues", id="slashes-and-braces"),
        pytest.param("9-lives", id="leading-digit"),
        pytest.param("y" * 200, id="too-long"),
        pytest.param("café-crème", id="non-ascii"),
        pytest.param("---", id="only-punctuation"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_key_becomes_a_valid_short_stable_name(key: str) -> None:
    name = tool_name(key)
    assert _RULE.match(name)
    assert len(name) <= MAX_LENGTH
    assert tool_name(key) == name


def test_two_keys_that_clean_up_alike_keep_different_names() -> None:
    assert tool_name("get lead") != tool_name("get/lead")


def test_a_key_that_would_shadow_one_of_our_tools_is_renamed() -> None:
    assert tool_name("confirm-action", reserved={"confirm-action"}) != "confirm-action"
