from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from kartra_mcp.config import DEFAULT_API_URL, Settings


def test_membrane_settings_use_membranes_own_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBRANE_TOKEN", "tok")
    monkeypatch.setenv("MEMBRANE_API_URL", "https://membrane.example/")
    monkeypatch.setenv("KARTRA_MCP_CONNECTION_ID", "conn-1")
    settings = Settings()
    assert settings.membrane_token is not None and settings.membrane_token.get_secret_value() == "tok"
    assert settings.membrane_api_url == "https://membrane.example"
    assert settings.connection_id == "conn-1"


def test_the_api_url_falls_back_to_the_sdks_variable_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().membrane_api_url == DEFAULT_API_URL
    monkeypatch.setenv("MEMBRANE_API_URI", "https://self-hosted.example")
    assert Settings().membrane_api_url == "https://self-hosted.example"
    monkeypatch.setenv("MEMBRANE_API_URL", "https://preferred.example")
    assert Settings().membrane_api_url == "https://preferred.example"


def test_state_and_cache_live_in_the_users_directories(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings()
    assert settings.audit_db == tmp_path / "state" / "kartra-mcp" / "audit.sqlite3"
    assert settings.cache_dir == tmp_path / "cache" / "kartra-mcp"


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBRANE_TOKEN", "very-secret-token")
    monkeypatch.setenv("MEMBRANE_WORKSPACE_SECRET", "very-secret-secret")
    monkeypatch.setenv("KARTRA_MCP_HTTP_TOKEN", "very-secret-http")
    text = repr(Settings()) + str(Settings().model_dump())
    assert "very-secret" not in text


def test_an_unknown_tool_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARTRA_MCP_TOOL_MODE", "everything")
    with pytest.raises(ValidationError):
        Settings()


def test_variable_names_match_without_regard_to_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("kartra_mcp_tool_mode", "search")
    monkeypatch.setenv("Membrane_Token", "tok")
    settings = Settings()
    assert settings.tool_mode == "search"
    assert settings.membrane_token is not None and settings.membrane_token.get_secret_value() == "tok"


def test_membranes_own_name_wins_over_the_prefixed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARTRA_MCP_MEMBRANE_TOKEN", "prefixed")
    assert Settings().membrane_token == SecretStr("prefixed")
    monkeypatch.setenv("MEMBRANE_TOKEN", "membranes")
    assert Settings().membrane_token == SecretStr("membranes")


def test_arguments_win_over_the_environment_by_name_or_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBRANE_API_URL", "https://environment.example")
    monkeypatch.setenv("KARTRA_MCP_READ_ONLY", "true")
    assert Settings(membrane_api_url="https://argument.example/").membrane_api_url == "https://argument.example"
    assert Settings(MEMBRANE_API_URI="https://alias.example").membrane_api_url == "https://alias.example"
    settings = Settings(read_only=False)
    assert settings.read_only is False
    assert settings.model_fields_set >= {"membrane_api_url", "read_only"}


def test_a_bad_value_from_the_environment_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARTRA_MCP_START_TIMEOUT", "soon")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert [e["loc"] for e in raised.value.errors()] == [("start_timeout",)]


def test_unset_settings_are_not_counted_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KARTRA_MCP_UNKNOWN_THING", "x")
    assert Settings().model_fields_set == set()
