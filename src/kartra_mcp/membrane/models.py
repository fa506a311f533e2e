"""The parts of Membrane's responses kartra-mcp reads; unknown fields are kept, not rejected."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class Integration(_Model):
    id: str = ""
    key: str = ""
    name: str = ""
    logo_uri: str | None = None


class Connection(_Model):
    id: str
    name: str = ""
    connected: bool | None = None
    disconnected: bool | None = None
    is_test: bool | None = None
    state: str | None = None
    integration_id: str | None = None
    integration: Integration | None = None
    tenant_id: str | None = None

    @property
    def is_connected(self) -> bool:
        if self.connected is not None:
            return self.connected
        return not self.disconnected

    @property
    def integration_key(self) -> str:
        return self.integration.key if self.integration else ""


class ConnectionRequest(_Model):
    request_id: str
    url: str = ""
    status: str = "pending"
    result_connection_id: str | None = None
    result_error: Any = None


class Action(_Model):
    id: str
    key: str = ""
    name: str = ""
    description: str | None = None
    type: str | None = None
    state: str | None = None
    integration_id: str | None = None
    integration_key: str | None = None
    integration: Integration | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    is_deactivated: bool | None = None


class ActionRun(_Model):
    output: Any = None
    action_run_id: str | None = Field(None, alias="actionRunId")


@dataclass(frozen=True)
class ProxyResponse:
    """The upstream's answer through Membrane's proxy, as the upstream sent it."""

    status_code: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def data(self) -> Any:
        """The body as JSON when it is JSON, else as text."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return self.text
