"""All settings, in one object built once in `main()` and passed down."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_API_URL = "https://api.getmembrane.com"
APP_DIR = "kartra-mcp"


def _platform_dir(kind: Literal["state", "cache"]) -> Path:
    """The user's state or cache directory for kartra-mcp, as each platform places them."""
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / ("Application Support" if kind == "state" else "Caches")
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        variable, fallback = ("XDG_STATE_HOME", ".local/state") if kind == "state" else ("XDG_CACHE_HOME", ".cache")
        base = Path(os.environ.get(variable) or home / fallback)
    return base / APP_DIR


class Settings(BaseSettings):
    """Where Membrane is, how to authenticate, and how the server behaves.

    Membrane settings keep the names Membrane's own tools use (`MEMBRANE_*`); kartra-mcp's own
    settings are `KARTRA_MCP_*`.
    """

    model_config = SettingsConfigDict(env_prefix="KARTRA_MCP_", extra="ignore", populate_by_name=True)

    membrane_token: SecretStr | None = Field(None, validation_alias=AliasChoices("MEMBRANE_TOKEN", "membrane_token"))
    membrane_workspace_key: str | None = Field(
        None, validation_alias=AliasChoices("MEMBRANE_WORKSPACE_KEY", "membrane_workspace_key")
    )
    membrane_workspace_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MEMBRANE_WORKSPACE_SECRET", "membrane_workspace_secret")
    )
    membrane_tenant_key: str | None = Field(
        None, validation_alias=AliasChoices("MEMBRANE_TENANT_KEY", "membrane_tenant_key")
    )
    membrane_api_url: str = Field(
        DEFAULT_API_URL, validation_alias=AliasChoices("MEMBRANE_API_URL", "MEMBRANE_API_URI", "membrane_api_url")
    )
    connection_id: str | None = None
    tool_mode: Literal["actions", "search"] = "actions"
    policy: Path | None = None
    read_only: bool = False
    kill_switch: bool = False
    audit_db: Path = Field(default_factory=lambda: _platform_dir("state") / "audit.sqlite3")
    cache_dir: Path = Field(default_factory=lambda: _platform_dir("cache"))
    # Replicas sharing state: confirmations, caps and refund holds in Redis; the audit log in PostgreSQL.
    # Secret, since either may carry a password.
    redis_url: SecretStr | None = None
    audit_dsn: SecretStr | None = None
    http_token: SecretStr | None = None
    auth: Literal["token", "membrane"] = "token"
    public_url: str | None = None
    token_cache_ttl: float = Field(30.0, ge=0, le=3600)
    tenant_ttl: float = Field(900.0, gt=0)
    max_tenants: int = Field(256, ge=1)
    # Approvals: how long a call waits for the person's answer in their browser (stdio), the approver
    # credential of the HTTP approval inbox, a webhook told of each pending call, and the public URL
    # of an HTTP deployment (behind a proxy), so links and the page's origin check are right.
    approval_timeout: float = Field(120.0, gt=0, le=3600)
    approver_token: SecretStr | None = None
    approval_webhook: str | None = None
    request_timeout: float = Field(65.0, gt=0, le=600)
    # How long `serve` waits for Membrane at a start without a cached catalog before serving anyway.
    start_timeout: float = Field(10.0, gt=0, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("membrane_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def has_credentials(self) -> bool:
        return self.membrane_token is not None or (
            self.membrane_workspace_key is not None and self.membrane_workspace_secret is not None
        )
