"""The sandbox for a team: one account per tenant, and Membrane's OAuth (code + PKCE S256, refresh, revoke)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
import pytest

from kartra_mcp.sandbox import Tenants

BASE = "http://membrane.test"
REDIRECT = "http://127.0.0.1:9/callback"
VERIFIER = "a-code-verifier-of-more-than-forty-three-characters-0123456789"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    team = Tenants(keys=("alice", "bob"), base_url=BASE, leads=20)
    yield team
    team.close()


@pytest.fixture
async def http(tenants: Tenants) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=tenants), base_url=BASE) as client:
        yield client


async def _client_id(http: httpx2.AsyncClient) -> str:
    registered = await http.post("/oauth/register", json={"redirect_uris": [REDIRECT], "client_name": "t"})
    assert registered.status_code == 201
    client_id: str = registered.json()["client_id"]
    return client_id


async def _code(http: httpx2.AsyncClient, client_id: str, tenant: str = "alice", **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": _challenge(VERIFIER),
        "code_challenge_method": "S256",
        "state": "s1",
        "scope": "tenant",
        "tenant": tenant,
        **extra,
    }
    answer = await http.get("/oauth/authorize", params=params)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlparse(answer.headers["location"]).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


async def _exchange(http: httpx2.AsyncClient, client_id: str, code: str, verifier: str = VERIFIER) -> httpx2.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    return await http.post("/oauth/token", data=form)


async def _connections(http: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await http.get("/connections", headers={"Authorization": f"Bearer {token}"})


async def test_a_signed_in_token_reaches_its_own_tenant_s_account_only(
    http: httpx2.AsyncClient, tenants: Tenants
) -> None:
    client_id = await _client_id(http)
    tokens = {}
    for who in ("alice", "bob"):
        issued = await _exchange(http, client_id, await _code(http, client_id, who))
        assert issued.status_code == 200 and issued.json()["default_tenant_key"] == who
        tokens[who] = issued.json()["access_token"]
    seen = {who: (await _connections(http, token)).json()["items"] for who, token in tokens.items()}
    assert seen["alice"][0]["id"] != seen["bob"][0]["id"]
    assert seen["alice"][0]["tenantId"] != seen["bob"][0]["tenantId"]


def test_each_tenant_s_account_is_seeded_from_its_key_the_same_every_time() -> None:
    first, again = Tenants(keys=("alice", "bob"), leads=20), Tenants(keys=("alice",), leads=20)
    try:
        samples: dict[str, Any] = {k: s.state()["samples"] for k, s in first.sandboxes.items()}
        assert samples["alice"] == again.sandboxes["alice"].state()["samples"]
        assert samples["alice"]["lead"]["email"] != samples["bob"]["lead"]["email"]
    finally:
        first.close()
        again.close()


async def test_a_wrong_pkce_verifier_or_a_second_use_of_a_code_gets_no_token(http: httpx2.AsyncClient) -> None:
    client_id = await _client_id(http)
    code = await _code(http, client_id)
    wrong = await _exchange(http, client_id, code, verifier="x" * 50)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = await _code(http, client_id)
    assert (await _exchange(http, client_id, code)).status_code == 200
    assert (await _exchange(http, client_id, code)).json()["error"] == "invalid_grant"


async def test_authorize_never_redirects_to_an_address_the_client_did_not_register(http: httpx2.AsyncClient) -> None:
    client_id = await _client_id(http)
    answer = await http.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": "http://evil.example/cb"},
    )
    assert answer.status_code == 400 and "location" not in answer.headers


async def test_authorize_without_pkce_or_with_another_scope_is_refused_back_to_the_client(
    http: httpx2.AsyncClient,
) -> None:
    client_id = await _client_id(http)
    base = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "tenant": "alice"}
    for params, error in (
        (base, "invalid_request"),
        ({**base, "code_challenge": "c", "code_challenge_method": "plain"}, "invalid_request"),
        ({**base, "code_challenge": "c", "code_challenge_method": "S256", "scope": "platform-user"}, "invalid_scope"),
    ):
        answer = await http.get("/oauth/authorize", params=params)
        assert parse_qs(urlparse(answer.headers["location"]).query)["error"] == [error]


async def test_a_refresh_token_is_spent_once_and_gives_a_working_access_token(http: httpx2.AsyncClient) -> None:
    client_id = await _client_id(http)
    first = (await _exchange(http, client_id, await _code(http, client_id))).json()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": client_id}
    refreshed = await http.post("/oauth/token", data=form)
    assert refreshed.status_code == 200
    assert (await _connections(http, refreshed.json()["access_token"])).status_code == 200
    assert (await http.post("/oauth/token", data=form)).json()["error"] == "invalid_grant"


async def test_an_expired_or_revoked_token_is_refused(http: httpx2.AsyncClient, tenants: Tenants) -> None:
    assert (await _connections(http, tenants.mint("alice", lifetime=-1))).status_code == 401
    token = tenants.mint("alice")
    assert (await _connections(http, token)).status_code == 200
    assert (await http.post("/oauth/revoke", data={"token": token})).status_code == 200
    assert (await _connections(http, token)).status_code == 401


async def test_the_authorization_server_metadata_names_its_endpoints_under_its_issuer(
    http: httpx2.AsyncClient,
) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == BASE
    assert metadata["token_endpoint"] == f"{BASE}/oauth/token"
    assert metadata["registration_endpoint"] == f"{BASE}/oauth/register"
    assert metadata["scopes_supported"] == ["tenant"]
