"""Injected faults: latency, error statuses (some of the time, or a burst), hangs, spoiled bodies.

Hangs are seen through `MembraneClient` with a short timeout, as kartra-mcp would see them; the
sandbox runs in-process, so a timed-out request's hang ends with the client's wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from kartra_mcp.errors import MembraneProtocolError, MembraneRateLimited, MembraneTimeout
from kartra_mcp.membrane import BearerToken, MembraneClient
from kartra_mcp.sandbox import FaultRule, Sandbox, SandboxConfig, asgi_transport
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import SANDBOX_URL
from tests.conftest import FAST_RETRY
from tests.sandbox.conftest import error_body, http_client, kartra, snapshot

POINTS = {"lead_id": "1", "points": 5}


@pytest.fixture
async def short(sandbox: Sandbox) -> AsyncIterator[MembraneClient]:
    """The Membrane client with a 0.2 s timeout, so an injected hang is a timeout."""
    async with MembraneClient(
        base_url=SANDBOX_URL,
        auth=BearerToken(sandbox.token),
        transport=asgi_transport(sandbox),
        timeout=0.2,
        retry=FAST_RETRY,
    ) as client:
        yield client


async def _faults(client: httpx2.AsyncClient, *rules: dict[str, Any]) -> None:
    response = await client.put("/_sandbox/faults", json=list(rules))
    assert response.status_code == 200


async def _score(client: httpx2.AsyncClient) -> int:
    """Lead 1's points, read through the proxy, which the action-run rules below leave alone."""
    return int((await kartra(client, {"get_lead": {"id": "1"}}))["lead_details"]["score"])


async def test_latency_delays_the_answer_by_at_least_the_time_asked(client: httpx2.AsyncClient) -> None:
    await _faults(client, {"route": "GET /connections", "latency_ms": 150})
    started = time.perf_counter()
    response = await client.get("/connections")
    slow = time.perf_counter() - started
    assert response.status_code == 200
    assert slow >= 0.145  # the event loop may wake a clock tick early


@pytest.mark.parametrize(
    ("status", "kind", "key"),
    [
        pytest.param(500, "internal", None, id="500"),
        pytest.param(503, "internal", None, id="503"),
        pytest.param(429, "bad_request", "rate_limit_exceeded", id="429"),
        pytest.param(401, "bad_request", "not_authenticated", id="401"),
        pytest.param(404, "bad_request", "not_found", id="404"),
    ],
)
async def test_an_error_status_answers_membranes_error_body_and_the_request_is_not_carried_out(
    client: httpx2.AsyncClient, sandbox: Sandbox, status: int, kind: str, key: str | None
) -> None:
    await _faults(client, {"route": "POST /actions/*/run", "status": status})
    before = snapshot(sandbox)
    response = await client.post("/actions/give-points-to-lead/run", json={"input": POINTS})
    assert response.status_code == status
    body = error_body(response)
    assert (body["type"], body.get("key")) == (kind, key)
    assert snapshot(sandbox) == before
    assert sandbox.run_logs == {}


async def _outcomes(sandbox: Sandbox, count: int) -> list[int]:
    async with http_client(sandbox) as client:
        return [(await client.get("/connections")).status_code for _ in range(count)]


async def test_an_error_rate_is_deterministic_for_a_seed() -> None:
    boxes = [
        Sandbox(
            SandboxConfig(leads=3, fault_seed=seed, faults=[FaultRule(route="GET /connections", status=503, rate=0.5)])
        )
        for seed in (7, 7, 8)
    ]
    first, same, other = [await _outcomes(box, 40) for box in boxes]
    assert first == same
    assert first != other
    assert set(first) == {200, 503}  # some of the time: both outcomes happen
    async with http_client(boxes[0]) as client:  # clearing the faults restarts the sequence
        await client.delete("/_sandbox/faults")
        await _faults(client, {"route": "GET /connections", "status": 503, "rate": 0.5})
    assert await _outcomes(boxes[0], 40) == first
    for box in boxes:
        box.close()


async def test_a_429_burst_answers_429_the_given_number_of_times_then_recovers(
    client: httpx2.AsyncClient, sandbox: Sandbox
) -> None:
    await _faults(client, {"status": 429, "times": 3})
    statuses = [(await client.get("/connections")).status_code for _ in range(5)]
    assert statuses == [429, 429, 429, 200, 200]
    [rule] = (await client.get("/_sandbox/faults")).json()["faults"]
    assert rule["applied"] == 3


async def test_a_read_rides_out_a_429_burst_and_a_write_is_not_resent(
    sandbox: Sandbox, client: httpx2.AsyncClient, short: MembraneClient
) -> None:
    await _faults(client, {"route": "GET /actions/*", "status": 429, "times": 3})
    sandbox.requests.clear()
    action = await short.get_action("give-points-to-lead")
    assert action.key == "give-points-to-lead"
    assert len(sandbox.requests) == 4

    await _faults(client, {"route": "POST /act/action/*", "status": 429, "times": 1})
    before = await _score(client)
    with pytest.raises(MembraneRateLimited):
        await short.run_action(action.id, connection_id=sandbox.connections[0]["id"], input=POINTS, retry_safe=False)
    assert await _score(client) == before


async def test_a_hang_before_the_request_is_a_client_timeout_and_nothing_is_done(
    sandbox: Sandbox, client: httpx2.AsyncClient, short: MembraneClient
) -> None:
    await _faults(client, {"route": "POST /act/action/*", "hang_seconds": 2})
    before = await _score(client)
    with anyio.fail_after(1.5), pytest.raises(MembraneTimeout) as caught:
        await short.run_action(
            "give-points-to-lead", connection_id=sandbox.connections[0]["id"], input=POINTS, retry_safe=False
        )
    assert caught.value.may_have_executed  # the client cannot know; here the sandbox never got to it
    assert await _score(client) == before
    assert sandbox.run_logs == {}


async def test_a_after_the_request_carries_out_the_write_once_and_loses_the_answer(
    sandbox: Sandbox, client: httpx2.AsyncClient, short: MembraneClient
) -> None:
    await _faults(client, {"route": "POST /act/action/*", "hang_seconds": 2, "after": True})
    before = await _score(client)
    sandbox.requests.clear()
    with anyio.fail_after(1.5), pytest.raises(MembraneTimeout):
        await short.run_action(
            "give-points-to-lead", connection_id=sandbox.connections[0]["id"], input=POINTS, retry_safe=False
        )
    give_points = BY_KEY["give-points-to-lead"].id
    assert [r.get("runs") for r in sandbox.requests] == ["/act", f"/act/action/{give_points}"]  # probe, run
    assert await _score(client) == before + 5
    assert [(log["name"], log["status"]) for log in sandbox.run_logs.values()] == [
        (BY_KEY["give-points-to-lead"].name, "success")
    ]


async def test_a_read_that_hangs_once_is_asked_again_and_answered(
    sandbox: Sandbox, client: httpx2.AsyncClient, short: MembraneClient
) -> None:
    await _faults(client, {"route": "GET /connections/*", "hang_seconds": 2, "times": 1})
    with anyio.fail_after(1.5):
        connection = await short.get_connection("kartra")
    assert connection.id == sandbox.connections[0]["id"]


async def test_a_malformed_body_follows_a_request_that_was_carried_out(
    sandbox: Sandbox, client: httpx2.AsyncClient, short: MembraneClient
) -> None:
    await _faults(
        client, {"route": "POST /actions/*/run", "malformed": True}, {"route": "POST /act/action/*", "malformed": True}
    )
    before = await _score(client)
    raw = await client.post("/actions/give-points-to-lead/run", json={"input": POINTS})
    assert raw.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        raw.json()
    with pytest.raises(MembraneProtocolError):
        await short.run_action(
            "give-points-to-lead", connection_id=sandbox.connections[0]["id"], input=POINTS, retry_safe=False
        )
    assert await _score(client) == before + 10


@pytest.mark.parametrize(
    ("route", "hit", "missed"),
    [
        pytest.param("POST /act", ("POST", "/act"), ("GET", "/connections"), id="method and exact path"),
        pytest.param("/connections/*", ("GET", "/connections/kartra"), ("GET", "/connections"), id="any method, glob"),
        pytest.param("GET *", ("GET", "/actions"), ("POST", "/act"), id="one method, any path"),
    ],
)
async def test_a_rule_applies_only_to_the_requests_its_route_matches(
    client: httpx2.AsyncClient, route: str, hit: tuple[str, str], missed: tuple[str, str]
) -> None:
    await _faults(client, {"route": route, "status": 418})
    assert (await client.request(*hit, json={"key": "get-lead", "input": {}})).status_code == 418
    assert (await client.request(*missed, json={"key": "get-lead", "input": {}})).status_code == 200


async def test_the_first_matching_rule_that_is_not_spent_applies(client: httpx2.AsyncClient) -> None:
    await _faults(
        client, {"route": "GET /connections", "status": 429, "times": 1}, {"route": "GET /connections", "status": 503}
    )
    assert [(await client.get("/connections")).status_code for _ in range(3)] == [429, 503, 503]


async def test_admin_routes_are_never_faulted(client: httpx2.AsyncClient, sandbox: Sandbox) -> None:
    await _faults(client, {"route": "/_sandbox/*", "hang_seconds": 5}, {"status": 500})
    assert (await client.get("/connections")).status_code == 500
    with anyio.fail_after(2):
        assert (await client.get("/_sandbox/state")).status_code == 200
        assert (await client.get("/_sandbox/requests")).status_code == 200
        assert (await client.get("/_sandbox/faults")).status_code == 200
        async with http_client(sandbox, token="") as browser:
            assert (await browser.get("/_sandbox/connect/unknown")).status_code == 404
        assert (await client.post("/_sandbox/reset", json={"leads": 5})).status_code == 200
    assert (await client.get("/connections")).status_code == 200  # the reset cleared the faults


async def test_faults_given_at_start_apply_from_the_first_request() -> None:
    sandbox = Sandbox(SandboxConfig(leads=3, faults=[FaultRule(route="GET /search", status=502, times=1)]))
    async with http_client(sandbox) as client:
        assert (await client.get("/search", params={"q": "kartra"})).status_code == 502
        assert (await client.get("/search", params={"q": "kartra"})).status_code == 200
    sandbox.close()
