"""Fixtures and helpers for the sandbox's tests: a raw HTTP client over it, and short ways to call it.

Everything here goes through the sandbox's HTTP surface (`asgi_transport`), as a Membrane client
would; `snapshot` reads the account itself, to prove a refused call changed nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import pytest

from kartra_mcp import phpform
from kartra_mcp.sandbox import Sandbox, asgi_transport
from kartra_mcp.server.runtime import SANDBOX_URL

FORM = {"content-type": "application/x-www-form-urlencoded"}

_PLACEHOLDER = re.compile(r"^<([\w.]+)>$")


def fill(value: Any, world: Mapping[str, Any]) -> Any:
    """Replace every `<name.field>` in an input with that value from the world."""
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    found: Any = world
    for part in match.group(1).split("."):
        found = found[part]
    return found


def http_client(sandbox: Sandbox, token: str | None = None, **kwargs: Any) -> httpx2.AsyncClient:
    """A plain httpx2 client over the sandbox's in-process transport, with a bearer token unless `token=""`."""
    token = sandbox.token if token is None else token
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(
        base_url=SANDBOX_URL, transport=asgi_transport(sandbox), headers=headers, trust_env=False, **kwargs
    )


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx2.AsyncClient]:
    async with http_client(sandbox) as opened:
        yield opened


@pytest.fixture
def connection_id(sandbox: Sandbox) -> str:
    connection: str = sandbox.connections[0]["id"]
    return connection


_RECORDS = (
    "leads",
    "tags",
    "lists",
    "sequences",
    "custom_fields",
    "pages",
    "memberships",
    "products",
    "transactions",
    "subscriptions",
    "next_ids",
)


def snapshot(sandbox: Sandbox) -> str:
    """Every record of the account and its id counters as one comparable text.

    A dataclass's repr shows every field; records are sorted by id, as a reloaded account holds
    them in the store's order.
    """
    account = sandbox.account
    return repr([sorted(getattr(account, kind).items()) for kind in _RECORDS])


def error_body(response: httpx2.Response) -> dict[str, Any]:
    """Membrane's error body; every one has a type and a message, and nothing beyond its known keys."""
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("type"), str) and isinstance(body.get("message"), str), body
    assert set(body) <= {"type", "key", "message", "data"}, body
    return body


async def run(client: httpx2.AsyncClient, key: str, data: Mapping[str, Any]) -> httpx2.Response:
    """Run an action the documented way: `POST /actions/{key}/run` with `{"input": ...}`."""
    return await client.post(f"/actions/{key}/run", json={"input": dict(data)})


async def output(client: httpx2.AsyncClient, key: str, data: Mapping[str, Any]) -> Any:
    """Run an action that Membrane accepts, and give its output (Kartra's answer, success or not)."""
    response = await run(client, key, data)
    assert response.status_code == 200, response.text
    return response.json()["output"]


async def lead(client: httpx2.AsyncClient, **selector: str) -> dict[str, Any]:
    """A lead's details through get-lead, by `email=` or `lead_id=`."""
    answer = await output(client, "get-lead", selector)
    assert answer["status"] == "Success", answer
    details: dict[str, Any] = answer["lead_details"]
    return details


async def kartra(
    client: httpx2.AsyncClient, form: Mapping[str, Any], *, path: str = "/", connection: str = "kartra"
) -> dict[str, Any]:
    """One call to Kartra's own API through the proxy, form-encoded in PHP bracket notation."""
    response = await client.post(f"/connections/{connection}/proxy{path}", content=phpform.encode(form), headers=FORM)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def state(client: httpx2.AsyncClient) -> dict[str, Any]:
    response = await client.get("/_sandbox/state")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body
