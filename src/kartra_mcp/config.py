"""All settings, in one object built once in `main()` and passed down.

They are read from the environment the way pydantic-settings reads them, by a few lines here
instead (importing pydantic-settings was a sixth of a one-shot command's time): names match without
regard to case; a field with `MEMBRANE_*` aliases takes the first alias set, else
`KARTRA_MCP_<FIELD>`, and any other field `KARTRA_MCP_<FIELD>`; values given as arguments (by name
or alias) win over the environment; the strings are then validated like any other input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo

DEFAULT_API_URL = "https://api.getmembrane.com"
APP_DIR = "kartra-mcp"
ENV_PREFIX = "KARTRA_MCP_"


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


def _aliases(field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    return [a for a in alias.choices if isinstance(a, str)] if isinstance(alias, AliasChoices) else []


def _from_environment(fields: dict[str, FieldInfo], skip: set[str]) -> dict[str, str]:
    """The value of each field the environment sets, by field name; the fields in `skip` are left out."""
    environ = {name.lower(): value for name, value in os.environ.items()}
    found: dict[str, str] = {}
    for name, field in fields.items():
        if name in skip:
            continue
        for variable in [*_aliases(field), f"{ENV_PREFIX}{name}"]:
            if variable.lower() in environ:
                found[name] = environ[variable.lower()]
                break
    return found


class Settings(BaseModel):
    """Where Membrane is, how to authenticate, and how the server behaves.

    Membrane settings keep the names Membrane's own tools use (`MEMBRANE_*`); kartra-mcp's own
    settings are `KARTRA_MCP_*`.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

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

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        by_alias = {alias: name for name, field in fields.items() for alias in _aliases(field)}
        given = {by_alias.get(key, key): value for key, value in values.items()}
        super().__init__(**{**_from_environment(fields, set(given)), **given})

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
