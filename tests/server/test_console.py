"""How much the command line logs, and how it lays out a table."""

from __future__ import annotations

import logging

import pytest

from kartra_mcp.config import Settings
from kartra_mcp.server.console import ENVIRONMENT, clip, clock, log_level, table


@pytest.mark.parametrize(
    ("command", "flag", "verbose", "configured", "level"),
    [
        ("serve", None, 0, None, logging.INFO),
        ("sandbox", None, 0, None, logging.INFO),
        ("call", None, 0, None, logging.WARNING),
        ("doctor", None, 1, None, logging.INFO),
        ("tools", None, 2, None, logging.DEBUG),
        ("serve", None, 1, None, logging.DEBUG),
        ("serve", None, 5, None, logging.DEBUG),
        ("call", None, 0, "ERROR", logging.ERROR),
        ("call", None, 1, "ERROR", logging.INFO),
        ("serve", "warning", 2, "DEBUG", logging.WARNING),
    ],
)
def test_the_log_level_is_the_flag_else_each_v_a_step_else_the_setting_else_the_command_s_own(
    command: str, flag: str | None, verbose: int, configured: str | None, level: int
) -> None:
    assert log_level(command, flag=flag, verbose=verbose, configured=configured) == level


def test_a_table_has_a_header_and_each_column_is_as_wide_as_its_widest_cell() -> None:
    lines = table(
        [{"name": "get-lead", "risk": "read", "title": "Get lead"}, {"name": "x", "risk": "critical", "title": ""}],
        [("name", "TOOL"), ("risk", "CLASS"), ("title", "TITLE")],
    )
    assert lines == ["TOOL      CLASS     TITLE", "get-lead  read      Get lead", "x         critical"]


def test_clipped_text_says_it_was_clipped_and_short_text_is_left_alone() -> None:
    assert clip("abcdef", 4) == "abc…" and clip("abcd", 4) == "abcd"
    assert (clock(600), clock(59.2), clock(0)) == ("10:00", "1:00", "0:00")


def test_every_environment_variable_a_help_names_is_a_setting() -> None:
    known = {f"KARTRA_MCP_{name.upper()}" for name in Settings.model_fields} | {
        alias
        for field in Settings.model_fields.values()
        for alias in getattr(field.validation_alias, "choices", ())
        if isinstance(alias, str) and alias.isupper()
    }
    named = {name for variables in ENVIRONMENT.values() for name, _ in variables}
    assert named <= known, named - known


def test_serve_s_help_names_every_setting() -> None:
    """A new setting is named where people look for it (serve reads them all)."""
    served = {name for name, _ in ENVIRONMENT["serve"]}
    missing = [
        name
        for name, field in Settings.model_fields.items()
        if f"KARTRA_MCP_{name.upper()}" not in served
        and not any(isinstance(a, str) and a in served for a in getattr(field.validation_alias, "choices", ()))
    ]
    assert missing == []
