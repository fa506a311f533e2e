"""Hosted for a team: people sign in with Membrane (the sandbox's OAuth) and each sees only their own tenant.

Both servers listen on real sockets; clients are the `mcp` SDK's, signing in with its OAuth provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
import jwt
import pytest
import uvicorn
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Tenants
from kartra_mcp.sandbox.actions import custom_action, object_id
from kartra_mcp.server.hosted import Hosted, open_hosted
from kartra_mcp.server.listing import ListingCache
from kartra_mcp.tools.audit import AuditLog
from tests.conftest import FAST_RETRY
from tests.processes import free_port
from tests.server.conftest import all_tools, text_of


@asynccontextmanager
async def _listening(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="on")
    )
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield
        finally:
            server.should_exit = True


@dataclass
class Team:
    sandbox: Tenants
    hosted: Hosted
    audit: AuditLog
    base: str

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Team]:
    membrane_port, mcp_port = free_port(), free_port()
    sandbox = Tenants(keys=("alice", "bob"), base_url=f"http://127.0.0.1:{membrane_port}", leads=30)
    # Confirmation ids, chosen in the policy, so the tests can show one tenant cannot spend another's.
    policy = tmp_path / "policy.toml"
    policy.write_text('on_unconfirmable = "token"\n')
    settings = Settings(
        membrane_api_url=sandbox.base_url, audit_db=tmp_path / "audit.sqlite3", auth="membrane", policy=policy
    )
    audit = AuditLog(settings.audit_db)
    try:
        async with (
            _listening(sandbox, membrane_port),
            open_hosted(settings, host="127.0.0.1", port=mcp_port, audit=audit) as (app, hosted),
            _listening(app, mcp_port),
        ):
            yield Team(sandbox, hosted, audit, f"http://127.0.0.1:{mcp_port}")
    finally:
        audit.close()
        sandbox.close()


class _Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class _Browser:
    """Opens the sign-in page the client redirects to and picks `tenant`, as a person would click it."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.redirect: dict[str, list[str]] = {}

    async def open(self, url: str) -> None:
        async with httpx2.AsyncClient(trust_env=False) as browser:
            page = await browser.get(url)
            assert page.status_code == 200 and "Choose the tenant" in page.text
            chosen = await browser.post(url, data={"tenant": self.tenant})
        assert chosen.status_code == 302, chosen.text
        self.redirect = parse_qs(urlparse(chosen.headers["location"]).query)

    async def callback(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=self.redirect["code"][0], state=self.redirect["state"][0])


@asynccontextmanager
async def _signed_in(team: Team, tenant: str, mode: str) -> AsyncIterator[Client]:
    browser = _Browser(tenant)
    provider = OAuthClientProvider(
        server_url=team.mcp,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[AnyUrl("http://127.0.0.1:1/callback")], client_name="test", scope="tenant"
        ),
        storage=_Memory(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30), trust_env=False)
        )
        client = await stack.enter_async_context(Client(streamable_http_client(team.mcp, http_client=http), mode=mode))
        yield client


@asynccontextmanager
async def _with_token(team: Team, token: str, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False) as http,
        Client(streamable_http_client(team.mcp, http_client=http), mode=mode) as client,
    ):
        yield client


def _samples(team: Team, tenant: str) -> dict[str, Any]:
    samples: dict[str, Any] = team.sandbox.sandboxes[tenant].state()["samples"]
    return samples


async def test_two_people_signed_in_with_membrane_each_see_only_their_own_account_calls_and_rows(
    team: Team, mode: str
) -> None:
    alice, bob = _samples(team, "alice"), _samples(team, "bob")
    assert alice["lead"]["email"] != bob["lead"]["email"]
    refund = {"transaction_id": alice["refundable_transaction"]["transaction_id"]}
    async with _signed_in(team, "alice", mode) as as_alice, _signed_in(team, "bob", mode) as as_bob:
        mine = await as_alice.call_tool("get-lead", {"email": alice["lead"]["email"]})
        assert not mine.is_error, text_of(mine)
        theirs = await as_alice.call_tool("get-lead", {"email": bob["lead"]["email"]})
        assert theirs.is_error
        assert not (await as_bob.call_tool("get-lead", {"email": bob["lead"]["email"]})).is_error

        previewed = await as_alice.call_tool("refund-transaction", refund)
        confirmation_id = previewed.structured_content["confirmation_id"] if previewed.structured_content else None
        assert confirmation_id, text_of(previewed)
        stolen = await as_bob.call_tool("confirm-action", {"confirmation_id": confirmation_id})
        assert stolen.is_error
        assert team.sandbox.sandboxes["alice"].account.refunded_amount(int(refund["transaction_id"])) == 0
        confirmed = await as_alice.call_tool("confirm-action", {"confirmation_id": confirmation_id})
        assert not confirmed.is_error, text_of(confirmed)
        assert team.sandbox.sandboxes["alice"].account.refunded_amount(int(refund["transaction_id"])) > 0

    alice_rows = team.audit.rows(tenant=object_id("tenant", "alice"))
    bob_rows = team.audit.rows(tenant=object_id("tenant", "bob"))
    assert [r.outcome for r in alice_rows if r.tool == "refund-transaction"][:1] == ["success"]
    assert all(r.tool != "refund-transaction" for r in bob_rows)
    assert [r.tool for r in bob_rows] == ["confirm-action"]
    assert {r.tenant for r in team.audit.rows()} == {object_id("tenant", "alice"), object_id("tenant", "bob")}


async def test_a_static_bearer_membrane_token_works_as_a_signed_in_one(team: Team, mode: str) -> None:
    bob = _samples(team, "bob")
    async with _with_token(team, team.sandbox.mint("bob"), mode) as client:
        found = await client.call_tool("get-lead", {"email": bob["lead"]["email"]})
    assert not found.is_error, text_of(found)


async def test_an_expired_token_gets_401_pointing_at_the_metadata_which_names_membrane(team: Team) -> None:
    expired = team.sandbox.mint("alice", lifetime=-60)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28"}
    async with httpx2.AsyncClient(trust_env=False) as raw:
        refused = await raw.post(team.mcp, json=body, headers={**headers, "Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        metadata_url = f"{team.base}/.well-known/oauth-protected-resource/mcp"
        assert challenge.startswith("Bearer ") and f'resource_metadata="{metadata_url}"' in challenge
        for url in (metadata_url, f"{team.base}/.well-known/oauth-protected-resource"):
            metadata = (await raw.get(url)).json()
            assert metadata["resource"] == team.mcp
            assert metadata["authorization_servers"] == [team.sandbox.base_url]
        server = (await raw.get(f"{team.sandbox.base_url}/.well-known/oauth-authorization-server")).json()
    assert server["issuer"] == team.sandbox.base_url
    assert "S256" in server["code_challenge_methods_supported"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="garbage"),
        pytest.param(
            jwt.encode({"id": "alice", "iss": "sandbox-workspace"}, "a-guessed-secret-of-enough-length!", "HS256"),
            id="forged-signature",
        ),
    ],
)
async def test_a_forged_token_gets_401_and_reaches_no_tenant(team: Team, token: str) -> None:
    async with httpx2.AsyncClient(trust_env=False) as raw:
        refused = await raw.post(
            team.mcp,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        )
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]
    assert len(team.hosted.tenants) == 0


async def test_a_token_is_asked_of_membrane_once_and_remembered_by_its_digest_only(team: Team) -> None:
    token = team.sandbox.mint("alice")
    async with _with_token(team, token, "auto") as client:
        await client.list_tools()
        await client.list_tools()
    assert team.hosted.directory.lookups == 1
    assert token not in repr(team.hosted.directory._known._items)


async def test_when_membrane_cannot_be_asked_no_one_is_let_in(tmp_path: Path) -> None:
    settings = Settings(membrane_api_url=f"http://127.0.0.1:{free_port()}", audit_db=tmp_path / "a.sqlite3")
    audit = AuditLog(settings.audit_db)
    try:
        async with (
            open_hosted(settings, host="127.0.0.1", port=8000, audit=audit, retry=FAST_RETRY) as (app, hosted),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, raise_app_exceptions=False)) as http,
        ):
            answer = await http.post(
                "http://127.0.0.1:8000/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                headers={"Authorization": "Bearer some-token", "Accept": "application/json, text/event-stream"},
            )
        assert answer.status_code == 500
        assert len(hosted.tenants) == 0
    finally:
        audit.close()


async def test_each_tenant_is_listed_its_own_catalog_when_the_lists_are_kept(team: Team, mode: str) -> None:
    team.sandbox.sandboxes["bob"].add_action(custom_action({"key": "bobs-report", "cmd": "get_lead", "lead": True}))
    listed: dict[str, list[set[str]]] = {"alice": [], "bob": []}
    for _ in range(2):
        for tenant in listed:
            async with _with_token(team, team.sandbox.mint(tenant), mode) as client:
                listed[tenant].append({t.name for t in await all_tools(client)})
    alice, bob = listed["alice"], listed["bob"]
    assert alice[0] == alice[1] and bob[0] == bob[1]
    assert bob[0] - alice[0] == {"bobs-report"}
    assert next(m for m in team.hosted.server.middleware if isinstance(m, ListingCache)).served == 2


async def test_a_2025_session_answers_only_the_person_who_opened_it(team: Team) -> None:
    """Someone else's session id, with their own valid token, is a session that does not exist."""
    accept = {"Accept": "application/json, text/event-stream"}
    opening = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    alice = {**accept, "Authorization": f"Bearer {team.sandbox.mint('alice')}"}
    bob = {**accept, "Authorization": f"Bearer {team.sandbox.mint('bob')}"}
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as http:
        opened = await http.post(team.mcp, json=opening, headers=alice)
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        unsigned = await http.post(team.mcp, json=listing, headers={**accept, **session})
        borrowed = await http.post(team.mcp, json=listing, headers={**bob, **session})
        own = await http.post(team.mcp, json=listing, headers={**alice, **session})
        ended_by_bob = await http.delete(team.mcp, headers={**bob, **session})
        still = await http.post(team.mcp, json=listing, headers={**alice, **session})
    assert opened.status_code == 200 and opened.headers["content-type"] == "application/json"
    assert unsigned.status_code == 401
    assert borrowed.status_code == 404 and ended_by_bob.status_code == 404
    assert own.status_code == 200 and own.json()["result"]["tools"]
    assert still.status_code == 200


@pytest.mark.parametrize("version", ["2025-11-25", "2026-07-28"])
async def test_no_body_is_read_before_the_caller_has_signed_in(team: Team, version: str) -> None:
    """Whoever has no token is refused on the headers alone, however much body they promise."""
    url = urlparse(team.mcp)
    assert url.hostname and url.port
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {version}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    with anyio.fail_after(30):
        async with await anyio.connect_tcp(url.hostname, url.port) as stream:
            await stream.send(head.encode() + b'{"jsonrpc":"2.0","id":1,')  # and nothing more
            answer = await stream.receive()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
