"""The sandbox holds to Membrane's published API: run logs with every required field, their list
with its filters and paging, parameter bounds refused with Membrane's error body, `/act` checked as
its schema says, and deployments without a route stood in for."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from kartra_mcp.sandbox import Sandbox, SandboxConfig
from kartra_mcp.sandbox.actions import BY_KEY
from tests.sandbox.conftest import error_body, http_client

_REQUIRED = ("userId", "id", "integrationId", "connectionId", "name", "integrationActionId", "status", "createdAt")
POINTS = {"lead_id": "1", "points": 5}


async def _act(client: httpx2.AsyncClient, body: dict[str, Any]) -> httpx2.Response:
    return await client.post("/act", json=body)


async def test_every_run_log_has_the_required_fields_and_no_nulls(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    runs = [
        await _act(client, {"key": "give-points-to-lead", "connectionId": connection_id, "input": POINTS}),
        await _act(client, {"api": {"method": "POST", "path": "/", "body": {"get_lead": {"id": "1"}}}}),
        await client.post(f"/actions/{BY_KEY['get-lead'].id}/run", json={"input": {"lead_id": "1"}}),
        await _act(client, {"key": "give-points-to-lead", "connectionId": connection_id, "input": {"lead_id": "1"}}),
    ]
    ids = [r.json().get("actionRunId") or r.json()["data"]["actionRunId"] for r in runs]
    logs = [(await client.get(f"/action-run-logs/{run_id}")).json() for run_id in ids]
    for log in logs:
        assert all(isinstance(log[name], str) for name in _REQUIRED), log
        assert None not in log.values()
        assert isinstance(log["action"]["type"], str)
    assert [log["action"]["type"] for log in logs] == ["key", "api", "key", "key"]
    assert [log["status"] for log in logs] == ["success", "success", "success", "error"]
    assert "error" not in logs[0] and logs[3]["error"]["message"].startswith("Input validation failed")
    assert logs[0]["integrationActionId"] == BY_KEY["give-points-to-lead"].id


async def test_run_logs_are_listed_newest_first_filtered_and_paged(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    for points in (1, 2, 3):
        await _act(
            client, {"key": "give-points-to-lead", "connectionId": connection_id, "input": {**POINTS, "points": points}}
        )
    await _act(client, {"key": "give-points-to-lead", "connectionId": connection_id, "input": {"lead_id": "1"}})
    first = (await client.get("/action-run-logs", params={"limit": 2})).json()
    second = (await client.get("/action-run-logs", params={"limit": 2, "cursor": first["cursor"]})).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 2 and "cursor" not in second
    assert len({log["id"] for log in first["items"] + second["items"]}) == 4
    failed = (await client.get("/action-run-logs", params={"status": "error"})).json()["items"]
    assert [log["status"] for log in failed] == ["error"]
    by_action = await client.get("/action-run-logs", params={"actionId": BY_KEY["give-points-to-lead"].id})
    assert len(by_action.json()["items"]) == 4
    assert (await client.get("/action-run-logs", params={"connectionId": "other"})).json() == {"items": []}
    assert error_body(await client.get("/action-run-logs", params={"status": "maybe"}))["type"] == "bad_request"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        pytest.param("/search", {"q": "kartra", "limit": "101"}, id="search limit over 100"),
        pytest.param("/search", {"q": "kartra", "limit": "0"}, id="search limit under 1"),
        pytest.param("/search", {"q": "k" * 201}, id="search q over 200"),
        pytest.param("/search", {"q": "kartra", "elementType": "gadget"}, id="search unknown element type"),
        pytest.param("/actions", {"intent": "refund " * 40}, id="intent over 200 without a connection"),
        pytest.param("/actions", {"limit": "1001"}, id="actions limit over 1000"),
        pytest.param("/actions", {"layer": "tenant"}, id="actions unknown layer"),
        pytest.param("/connections", {"connected": "yes"}, id="connections boolean not true or false"),
        pytest.param("/connections/kartra", {"timeout": "61"}, id="connection wait timeout over 60"),
        pytest.param("/action-run-logs", {"limit": "five"}, id="run logs limit not a number"),
    ],
)
async def test_out_of_bound_parameters_are_a_400_with_membranes_error_body(
    client: httpx2.AsyncClient, path: str, query: dict[str, str]
) -> None:
    response = await client.get(path, params=query)
    assert response.status_code == 400
    body = error_body(response)
    assert body["type"] == "bad_request"
    assert next(iter(query)) in body["message"] or "q" in query


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"key": "get-lead", "action": {"id": "x"}}, id="an unknown field"),
        pytest.param({"api": {"method": "TRACE", "path": "/"}}, id="a method the api does not take"),
        pytest.param({"api": {"method": "POST"}}, id="no path"),
        pytest.param({"api": {"method": "POST", "path": "/", "headers": {"X-N": 1}}}, id="a header that is no string"),
        pytest.param({"api": {"method": "POST", "path": "/", "query": {"a": [1]}}}, id="a query value that is a list"),
        pytest.param({"key": 5}, id="a key that is no string"),
        pytest.param({"key": "get-lead", "integrationKey": "hubspot"}, id="another integration"),
    ],
)
async def test_act_refuses_what_its_schema_refuses_and_runs_nothing(
    client: httpx2.AsyncClient, sandbox: Sandbox, body: dict[str, Any]
) -> None:
    response = await _act(client, body)
    assert response.status_code in (400, 404)
    assert error_body(response)["type"] == "bad_request"
    assert sandbox.run_logs == {}


async def test_act_takes_membranes_aliases_url_and_data(client: httpx2.AsyncClient) -> None:
    response = await _act(client, {"api": {"method": "POST", "url": "/", "data": {"get_lead": {"id": "1"}}}})
    assert response.json()["output"]["lead_details"]["id"] == "1"


@pytest.mark.parametrize(
    ("without", "method", "path"),
    [
        ("act", "POST", "/act"),
        ("run", "POST", f"/actions/{BY_KEY['get-lead'].id}/run"),
        ("proxy", "POST", "/connections/kartra/proxy/"),
    ],
)
async def test_a_sandbox_without_a_route_answers_it_as_an_unknown_route(without: str, method: str, path: str) -> None:
    sandbox = Sandbox(SandboxConfig(leads=3, without=frozenset({without})))
    async with http_client(sandbox) as client:
        response = await client.request(method, path, json={})
        served = await client.get("/connections")
    assert response.status_code == 404 and error_body(response)["key"] == "not_found"
    assert served.status_code == 200
    sandbox.close()


def test_a_sandbox_cannot_go_without_a_route_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="search"):
        SandboxConfig(without=frozenset({"search"}))
