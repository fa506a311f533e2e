from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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
