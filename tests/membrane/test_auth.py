"""Credentials: tokens minted as Membrane's SDK mints them, accepted by a server that checks them."""

from __future__ import annotations

import jwt
import pytest
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.errors import ConfigError, MembraneNotAuthenticated
from kartra_mcp.membrane import BearerToken, MembraneClient, WorkspaceCredentials, auth_from_settings
from kartra_mcp.sandbox import Sandbox, SandboxConfig, asgi_transport
from kartra_mcp.server.runtime import SANDBOX_URL
from tests.conftest import FAST_RETRY

SECRET = "a-workspace-secret-long-enough-for-hs256"


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_minted_token_has_the_sdks_claims_and_an_hour_of_life() -> None:
    clock = _Clock(1_800_000_000)
    credentials = WorkspaceCredentials("ws-key", SECRET, "tenant-1", clock=clock)
    claims = jwt.decode(credentials.token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"id": "tenant-1", "iss": "ws-key", "exp": 1_800_003_600}
    assert jwt.get_unverified_header(credentials.token)["alg"] == "HS256"


def test_a_token_is_reused_until_a_minute_before_it_expires_then_minted_again() -> None:
    clock = _Clock(1_800_000_000)
    credentials = WorkspaceCredentials("ws-key", SECRET, "tenant-1", clock=clock)
    first = credentials.token
    clock.now += 3600 - 61
    assert credentials.token == first
    clock.now += 2
    renewed = credentials.token
    assert renewed != first
    assert jwt.decode(renewed, options={"verify_signature": False})["exp"] == int(clock.now) + 3600


async def test_the_sandbox_accepts_a_token_minted_from_its_workspace_credentials() -> None:
    config = SandboxConfig()
    sandbox = Sandbox(config)
    auth = WorkspaceCredentials(config.workspace_key, config.workspace_secret, config.tenant_key)
    async with MembraneClient(
        base_url=SANDBOX_URL, auth=auth, transport=asgi_transport(sandbox), retry=FAST_RETRY
    ) as client:
        assert len(await client.list_connections()) == 1


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    config = SandboxConfig()
    sandbox = Sandbox(config)
    auth = WorkspaceCredentials(config.workspace_key, "another-secret-that-is-long-enough-for-hs256", config.tenant_key)
    async with MembraneClient(
        base_url=SANDBOX_URL, auth=auth, transport=asgi_transport(sandbox), retry=FAST_RETRY
    ) as client:
        with pytest.raises(MembraneNotAuthenticated):
            await client.list_connections()


def test_credentials_never_show_their_secret() -> None:
    assert "s3cr3t" not in repr(BearerToken("s3cr3t"))
    assert "s3cr3t" not in repr(WorkspaceCredentials("k", "s3cr3t", "t"))


def test_a_given_token_wins_over_workspace_credentials() -> None:
    settings = Settings(
        membrane_token=SecretStr("tok"),
        membrane_workspace_key="k",
        membrane_workspace_secret=SecretStr("s"),
        membrane_tenant_key="t",
    )
    assert isinstance(auth_from_settings(settings), BearerToken)


def test_incomplete_workspace_credentials_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="MEMBRANE_TENANT_KEY"):
        auth_from_settings(Settings(membrane_workspace_key="k", membrane_workspace_secret=SecretStr("s")))


def test_no_credentials_point_to_the_variables_and_the_sandbox() -> None:
    with pytest.raises(ConfigError) as raised:
        auth_from_settings(Settings())
    assert "MEMBRANE_TOKEN" in str(raised.value)
    assert "--sandbox" in str(raised.value)
