"""The sandbox's Membrane-compatible HTTP API: every route, its pagination, selectors, errors and auth."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx2
import jwt
import pytest
from starlette.routing import Route

from kartra_mcp import phpform
from kartra_mcp.sandbox import Sandbox, SandboxConfig
from kartra_mcp.sandbox.actions import BY_KEY, CATALOG
from tests.sandbox.conftest import FORM, error_body, http_client, kartra, lead, output, snapshot, state

CATALOG_KEYS = [action.key for action in CATALOG]

# -- connections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "found"),
    [
        pytest.param({}, 1, id="no filter"),
        pytest.param({"integrationKey": "kartra"}, 1, id="integrationKey kartra"),
        pytest.param({"integrationKey": "hubspot"}, 0, id="integrationKey other"),
        pytest.param({"integrationId": "0" * 24}, 0, id="integrationId other"),
        pytest.param({"connected": "true"}, 1, id="connected"),
        pytest.param({"connected": "false"}, 0, id="disconnected"),
        pytest.param({"search": "KART"}, 1, id="search matches the name in any case"),
        pytest.param({"search": "zapier"}, 0, id="search matches nothing"),
    ],
)
async def test_listing_connections_applies_each_filter(
    client: httpx2.AsyncClient, query: dict[str, str], found: int
) -> None:
    response = await client.get("/connections", params=query)
    assert response.status_code == 200
    page = response.json()
    assert len(page["items"]) == found
    assert "cursor" not in page


async def test_a_listed_connection_carries_its_integration_and_filters_by_its_integration_id(
    client: httpx2.AsyncClient,
) -> None:
    [connection] = (await client.get("/connections")).json()["items"]
    assert connection["connected"] is True and connection["state"] == "READY"
    assert connection["integration"]["key"] == "kartra"
    same = await client.get("/connections", params={"integrationId": connection["integrationId"]})
    assert [c["id"] for c in same.json()["items"]] == [connection["id"]]


async def test_connections_are_paged_with_a_cursor_only_while_more_follow() -> None:
    sandbox = Sandbox(SandboxConfig(connections=3, leads=5))
    async with http_client(sandbox) as client:
        first = (await client.get("/connections", params={"limit": 2})).json()
        assert len(first["items"]) == 2
        second = (await client.get("/connections", params={"limit": 2, "cursor": first["cursor"]})).json()
        assert len(second["items"]) == 1
        assert "cursor" not in second
        ids = [c["id"] for c in first["items"] + second["items"]]
        assert ids == [c["id"] for c in sandbox.connections]
    sandbox.close()


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"limit": "0"}, id="limit 0"),
        pytest.param({"limit": "1001"}, id="limit over 1000"),
        pytest.param({"limit": "ten"}, id="limit not a number"),
        pytest.param({"cursor": "not-a-cursor"}, id="cursor not ours"),
        pytest.param({"cursor": "-1"}, id="cursor negative"),
        pytest.param({"cursor": "99"}, id="cursor past the end"),
    ],
)
@pytest.mark.parametrize("path", ["/connections", "/actions", "/search?q=kartra"])
async def test_an_invalid_limit_or_cursor_is_a_400(
    client: httpx2.AsyncClient, path: str, query: dict[str, str]
) -> None:
    response = await client.get(path, params=query)
    assert response.status_code == 400
    assert error_body(response)["type"] == "bad_request"


async def test_one_connection_is_found_by_id_and_by_its_integration_key(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    by_id = await client.get(f"/connections/{connection_id}")
    by_key = await client.get("/connections/kartra")
    assert by_id.status_code == by_key.status_code == 200
    assert by_id.json() == by_key.json()
    assert by_id.json()["id"] == connection_id


async def test_the_integration_key_is_ambiguous_with_two_connections() -> None:
    sandbox = Sandbox(SandboxConfig(connections=2, leads=5))
    async with http_client(sandbox) as client:
        response = await client.get("/connections/kartra")
        assert response.status_code == 404
        assert error_body(response)["key"] == "not_found"
        assert (await client.get(f"/connections/{sandbox.connections[1]['id']}")).status_code == 200
    sandbox.close()


async def test_an_unknown_connection_is_a_404(client: httpx2.AsyncClient) -> None:
    response = await client.get("/connections/" + "f" * 24)
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"


# -- connector search and connection requests -------------------------------------------------


async def test_searching_for_kartra_finds_its_connector(client: httpx2.AsyncClient, sandbox: Sandbox) -> None:
    response = await client.get("/search", params={"q": "kartra", "elementType": "connector"})
    assert response.status_code == 200
    [hit] = response.json()["items"]
    assert hit["elementType"] == "connector"
    assert hit["element"]["id"] == sandbox.integration["connectorId"]
    assert hit["element"]["key"] == "kartra"


@pytest.mark.parametrize(
    ("query", "status", "hits"),
    [
        pytest.param({"q": "hubspot", "elementType": "connector"}, 200, 0, id="another app"),
        pytest.param({"q": "kartra", "elementType": "flow"}, 200, 0, id="another element type"),
        pytest.param({"q": "kartra", "elementType": "integration"}, 200, 1, id="the integration"),
        pytest.param({"q": ""}, 400, 0, id="empty q"),
        pytest.param({"q": "k" * 201}, 400, 0, id="q over 200 characters"),
    ],
)
async def test_search_answers_only_for_kartra_and_checks_its_query(
    client: httpx2.AsyncClient, query: dict[str, str], status: int, hits: int
) -> None:
    response = await client.get("/search", params=query)
    assert response.status_code == status
    if status == 200:
        assert len(response.json()["items"]) == hits
    else:
        assert error_body(response)["type"] == "bad_request"


async def test_a_connection_request_is_pending_until_the_person_opens_its_page(
    client: httpx2.AsyncClient, sandbox: Sandbox
) -> None:
    connector = (await client.get("/search", params={"q": "kartra"})).json()["items"][0]["element"]["id"]
    created = await client.post("/connection-requests", json={"connectorId": connector})
    assert created.status_code == 200
    request = created.json()
    assert request["status"] == "pending"
    assert "resultConnectionId" not in request
    polled = (await client.get(f"/connection-requests/{request['requestId']}")).json()
    assert polled["status"] == "pending"

    async with http_client(sandbox, token="") as browser:
        page = await browser.get(request["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")

    done = (await client.get(f"/connection-requests/{request['requestId']}")).json()
    assert done["status"] == "success"
    assert done["resultConnectionId"] == sandbox.connections[0]["id"]


async def test_completing_a_connection_request_creates_the_connection_when_there_is_none() -> None:
    sandbox = Sandbox(SandboxConfig(connections=0, leads=5))
    async with http_client(sandbox) as client, http_client(sandbox, token="") as browser:
        assert (await client.get("/connections")).json()["items"] == []
        request = (await client.post("/connection-requests", json={"integrationKey": "kartra"})).json()
        assert (await browser.get(request["url"])).status_code == 200
        done = (await client.get(f"/connection-requests/{request['requestId']}")).json()
        [connection] = (await client.get("/connections")).json()["items"]
        assert done["resultConnectionId"] == connection["id"]
    sandbox.close()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"connectorId": "0" * 24}, id="unknown connector"),
        pytest.param({"integrationKey": "hubspot"}, id="another integration"),
        pytest.param({}, id="nothing to connect"),
    ],
)
async def test_a_connection_request_for_anything_but_kartra_is_a_404(
    client: httpx2.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/connection-requests", json=body)
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"


async def test_an_unknown_connection_request_is_a_404_and_its_page_says_so(
    client: httpx2.AsyncClient, sandbox: Sandbox
) -> None:
    response = await client.get("/connection-requests/unknown")
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"
    async with http_client(sandbox, token="") as browser:
        assert (await browser.get("/_sandbox/connect/unknown")).status_code == 404


# -- actions: list, search, intent, get ----------------------------------------------------------


async def _action_keys(client: httpx2.AsyncClient, **query: Any) -> list[str]:
    response = await client.get("/actions", params=query)
    assert response.status_code == 200, response.text
    return [item["key"] for item in response.json()["items"]]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({}, id="no filter"),
        pytest.param({"integrationKey": "kartra"}, id="integrationKey"),
        pytest.param({"integrationId": "<integration>"}, id="integrationId"),
        pytest.param({"connectionId": "<connection>"}, id="connectionId"),
        pytest.param({"connectionKey": "kartra"}, id="connectionKey by integration key"),
    ],
)
async def test_the_whole_catalog_is_listed_in_order_on_one_default_page(
    client: httpx2.AsyncClient, sandbox: Sandbox, query: dict[str, str]
) -> None:
    ids = {"<integration>": sandbox.integration["id"], "<connection>": sandbox.connections[0]["id"]}
    response = await client.get("/actions", params={k: ids.get(v, v) for k, v in query.items()})
    page = response.json()
    assert [a["key"] for a in page["items"]] == CATALOG_KEYS
    assert "cursor" not in page


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"integrationKey": "hubspot"}, id="another integrationKey"),
        pytest.param({"integrationId": "0" * 24}, id="another integrationId"),
        pytest.param({"search": "no-such-action"}, id="search without a match"),
    ],
)
async def test_listing_actions_for_anything_else_lists_none(client: httpx2.AsyncClient, query: dict[str, str]) -> None:
    assert await _action_keys(client, **query) == []


async def test_search_filters_actions_by_key_or_name(client: httpx2.AsyncClient) -> None:
    assert await _action_keys(client, search="refund") == ["refund-transaction"]
    assert await _action_keys(client, search="Membership Access") == [
        "grant-membership-access",
        "revoke-membership-access",
    ]


async def test_actions_are_paged_across_several_pages_without_loss_or_repeat(client: httpx2.AsyncClient) -> None:
    keys: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/actions", params=query)).json()
        pages += 1
        keys.extend(a["key"] for a in page["items"])
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert pages == 5  # 7 + 7 + 7 + 7 + 3
    assert keys == CATALOG_KEYS


async def test_an_intent_with_a_connection_ranks_the_relevant_actions_first(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    refund = await _action_keys(client, connectionId=connection_id, intent="refund a payment transaction")
    assert refund[0] == "refund-transaction"
    assert set(refund) < set(CATALOG_KEYS)  # only actions the intent is about
    assert "assign-tag" not in refund
    cancel = await _action_keys(client, connectionId=connection_id, intent="cancel a subscription", limit=3)
    assert cancel[0] == "cancel-subscription"
    assert len(cancel) == 3


async def test_intent_results_come_ten_to_a_page_unless_told_otherwise(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    query = {"connectionId": connection_id, "intent": "lead"}
    first = (await client.get("/actions", params=query)).json()
    assert len(first["items"]) == 10
    rest = (await client.get("/actions", params={**query, "cursor": first["cursor"], "limit": 100})).json()
    assert "cursor" not in rest
    keys = [a["key"] for a in first["items"] + rest["items"]]
    assert len(keys) == len(set(keys)) > 10
    assert all("lead" in key or "lead" in BY_KEY[key].description.casefold() for key in keys)


async def test_an_intent_without_a_connection_is_ignored(client: httpx2.AsyncClient) -> None:
    assert await _action_keys(client, intent="refund a payment transaction") == CATALOG_KEYS


async def test_an_intent_over_200_characters_is_a_400(client: httpx2.AsyncClient, connection_id: str) -> None:
    response = await client.get("/actions", params={"connectionId": connection_id, "intent": "refund " * 40})
    assert response.status_code == 400
    assert error_body(response)["type"] == "bad_request"


async def test_listing_actions_for_an_unknown_connection_is_a_404(client: httpx2.AsyncClient) -> None:
    response = await client.get("/actions", params={"connectionId": "f" * 24})
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/actions/{id}", id="by id"),
        pytest.param("/actions/{key}", id="by key"),
        pytest.param("/actions/kartra.{key}", id="by integrationKey.key"),
        pytest.param("/action?integrationKey=kartra&key={key}", id="by query"),
        pytest.param("/action?id={id}", id="by query id"),
    ],
)
@pytest.mark.parametrize("key", ["get-lead", "refund-transaction", "retrieve-account-pages"])
async def test_one_action_is_found_by_every_selector(client: httpx2.AsyncClient, path: str, key: str) -> None:
    action = BY_KEY[key]
    response = await client.get(path.format(id=action.id, key=key))
    assert response.status_code == 200
    found = response.json()
    assert (found["id"], found["key"], found["integrationKey"]) == (action.id, key, "kartra")
    assert ("inputSchema" in found) == (action.input_schema is not None)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/actions/no-such-action", 404, id="unknown key"),
        pytest.param("/actions/hubspot.get-lead", 404, id="another integration's key"),
        pytest.param("/action?integrationKey=hubspot&key=get-lead", 404, id="query for another integration"),
        pytest.param("/action?integrationKey=kartra", 400, id="query without a key"),
    ],
)
async def test_an_action_that_is_not_there_is_refused(client: httpx2.AsyncClient, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert error_body(response)["type"] == "bad_request"


# -- running actions, in every form Membrane's clients use --------------------------------------------

Runner = Callable[[httpx2.AsyncClient, str, str, dict[str, Any]], Awaitable[httpx2.Response]]


async def _run_by_id(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post(
        f"/actions/{BY_KEY[key].id}/run", params={"connectionId": connection}, json={"input": data}
    )


async def _run_by_key(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post(f"/actions/{key}/run", params={"connectionId": connection}, json={"input": data})


async def _run_by_dotted_key(
    client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]
) -> httpx2.Response:
    return await client.post(f"/actions/kartra.{key}/run", json={"input": data})


async def _run_by_query(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post(
        "/action/run", params={"integrationKey": "kartra", "key": key, "connectionId": connection}, json={"input": data}
    )


async def _act_by_id(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post("/act", json={"id": BY_KEY[key].id, "connectionId": connection, "input": data})


async def _act_by_key(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post("/act", json={"key": key, "integrationKey": "kartra", "input": data})


async def _run_on_connection(
    client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]
) -> httpx2.Response:
    return await client.post(f"/connections/{connection}/actions/{key}/run", json=data)


async def _run_instance(client: httpx2.AsyncClient, connection: str, key: str, data: dict[str, Any]) -> httpx2.Response:
    return await client.post(
        "/action-instance/run", params={"autoCreate": "true", "integrationKey": "kartra", "parentKey": key}, json=data
    )


RUN_FORMS = [
    pytest.param(_run_by_id, id="POST /actions/{id}/run"),
    pytest.param(_run_by_key, id="POST /actions/{key}/run"),
    pytest.param(_run_by_dotted_key, id="POST /actions/kartra.{key}/run"),
    pytest.param(_run_by_query, id="POST /action/run"),
    pytest.param(_act_by_id, id="POST /act id"),
    pytest.param(_act_by_key, id="POST /act key"),
    pytest.param(_run_on_connection, id="POST /connections/{c}/actions/{a}/run"),
    pytest.param(_run_instance, id="POST /action-instance/run"),
]


@pytest.mark.parametrize("runner", RUN_FORMS)
async def test_every_run_form_carries_a_write_out_once_and_logs_the_run(
    client: httpx2.AsyncClient, connection_id: str, runner: Runner
) -> None:
    before = int((await lead(client, lead_id="1"))["score"])
    response = await runner(client, connection_id, "give-points-to-lead", {"lead_id": "1", "points": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["output"]["type"] == "105"
    assert int((await lead(client, lead_id="1"))["score"]) == before + 5

    log = await client.get(f"/action-run-logs/{body['actionRunId']}")
    assert log.status_code == 200
    entry = log.json()
    assert (entry["status"], entry["integrationActionId"], entry["connectionId"]) == (
        "success",
        BY_KEY["give-points-to-lead"].id,
        connection_id,
    )
    assert entry["input"] == {"lead_id": "1", "points": 5}
    assert entry["output"] == body["output"]


async def test_the_action_instance_route_answers_with_logs_as_the_legacy_sdk_expects(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    legacy = (await _run_instance(client, connection_id, "retrieve-account-tags", {})).json()
    current = (await _run_by_key(client, connection_id, "retrieve-account-tags", {})).json()
    assert legacy["logs"] == []
    assert "logs" not in current
    assert legacy["output"] == current["output"]


@pytest.mark.parametrize("runner", RUN_FORMS)
async def test_every_run_form_validates_input_logs_the_failure_and_changes_nothing(
    client: httpx2.AsyncClient, sandbox: Sandbox, connection_id: str, runner: Runner
) -> None:
    before = snapshot(sandbox)
    response = await runner(client, connection_id, "give-points-to-lead", {"lead_id": "1", "points": "ten"})
    assert response.status_code == 400
    body = error_body(response)
    assert body["type"] == "bad_request"
    assert [e["path"] for e in body["data"]["errors"]] == ["points"]
    log = (await client.get(f"/action-run-logs/{body['data']['actionRunId']}")).json()
    assert (log["status"], log["integrationActionId"]) == ("error", BY_KEY["give-points-to-lead"].id)
    assert snapshot(sandbox) == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="none"),
        pytest.param({"id": BY_KEY["get-lead"].id, "key": "get-lead"}, id="id and key"),
        pytest.param({"key": "get-lead", "api": {"method": "POST", "path": "/"}}, id="key and api"),
        pytest.param({"id": "x", "key": "y", "api": {}, "code": "z"}, id="all four"),
    ],
)
async def test_act_needs_exactly_one_of_id_key_api_or_code(client: httpx2.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/act", json=body)
    assert response.status_code == 400
    assert error_body(response)["type"] == "bad_request"


async def test_act_does_not_run_custom_code(client: httpx2.AsyncClient) -> None:
    response = await client.post("/act", json={"code": "return 1"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "api",
    [
        pytest.param({"method": "POST", "path": "/", "body": {"get_lead": {"id": "1"}}}, id="JSON body"),
        pytest.param({"method": "POST", "path": "/api", "body": "get_lead%5Bid%5D=1"}, id="form body"),
        pytest.param({"method": "POST", "path": "/api", "query": {"get_lead[id]": "1"}}, id="query"),
    ],
)
async def test_act_with_api_calls_kartra_and_logs_the_call(client: httpx2.AsyncClient, api: dict[str, Any]) -> None:
    response = await client.post("/act", json={"api": api})
    assert response.status_code == 200
    body = response.json()
    assert body["output"]["lead_details"]["id"] == "1"
    log = (await client.get(f"/action-run-logs/{body['actionRunId']}")).json()
    assert log["status"] == "success"
    assert log["action"]["api"] == api


async def test_act_with_api_answers_an_upstream_error_status_with_membranes_error_body(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post("/act", json={"api": {"method": "GET", "path": "/"}})
    assert response.status_code == 405
    body = error_body(response)
    assert (body["type"], body["data"]["response"]["status"]) == ("dependency_error", 405)
    assert body["data"]["response"]["data"]["status"] == "Error"
    log = (await client.get(f"/action-run-logs/{body['data']['actionRunId']}")).json()
    assert (log["status"], log["error"]["type"]) == ("error", "action_run")


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        pytest.param("/actions/get-lead/run", {"content": b"{not json"}, 400, id="body not JSON"),
        pytest.param("/actions/get-lead/run", {"json": [1, 2]}, 400, id="body not an object"),
        pytest.param("/actions/get-lead/run", {"json": {"input": "lead 1"}}, 400, id="input not an object"),
        pytest.param("/connections/kartra/actions/get-lead/run", {"json": ["lead 1"]}, 400, id="raw input a list"),
        pytest.param("/actions/no-such-action/run", {"json": {"input": {}}}, 404, id="unknown action"),
        pytest.param(
            "/actions/get-lead/run?connectionId=" + "f" * 24, {"json": {"input": {}}}, 404, id="unknown connection"
        ),
        pytest.param("/connections/nope/actions/get-lead/run", {"json": {}}, 404, id="unknown connection selector"),
        pytest.param(
            "/act", {"json": {"key": "get-lead", "connectionId": "f" * 24}}, 404, id="act on an unknown connection"
        ),
    ],
)
async def test_a_run_request_membrane_cannot_take_is_refused_with_its_error_body(
    client: httpx2.AsyncClient, sandbox: Sandbox, path: str, kwargs: dict[str, Any], status: int
) -> None:
    before = snapshot(sandbox)
    response = await client.post(path, **kwargs)
    assert response.status_code == status
    body = error_body(response)
    assert body["type"] == "bad_request"
    assert body.get("key") == ("not_found" if status == 404 else None)
    assert snapshot(sandbox) == before


async def test_running_with_no_connection_at_all_is_a_connection_error() -> None:
    sandbox = Sandbox(SandboxConfig(connections=0, leads=5))
    async with http_client(sandbox) as client:
        response = await client.post("/actions/retrieve-account-tags/run", json={"input": {}})
        assert response.status_code == 400
        assert error_body(response)["type"] == "connection"
    sandbox.close()


async def test_an_unknown_action_run_log_is_a_404(client: httpx2.AsyncClient) -> None:
    response = await client.get("/action-run-logs/" + "0" * 24)
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"


# -- the proxy: Kartra's own API ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/", "/api", "/api/"])
async def test_the_proxy_reaches_kartra_at_its_base_and_at_api(client: httpx2.AsyncClient, path: str) -> None:
    body = await kartra(client, {"get_lead": {"id": "1"}}, path=path)
    assert body["status"] == "Success"
    assert body["lead_details"]["id"] == "1"


async def test_the_proxy_takes_a_form_encoded_php_bracket_body(client: httpx2.AsyncClient) -> None:
    body = await kartra(
        client, {"lead": {"id": "1"}, "actions": [{"cmd": "assign_tag", "tag_name": "Beta Tester"}]}, path="/api"
    )
    assert body == {
        "status": "Success",
        "actions": [{"assign_tag": {"status": "Success", "message": "Tag added to lead", "type": "103"}}],
    }
    assert "Beta Tester" in {t["tag_name"] for t in (await lead(client, lead_id="1"))["tags"]}


async def test_the_proxy_takes_a_json_body_too(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/connections/kartra/proxy/api",
        json={"lead": {"id": "1"}, "actions": [{"cmd": "give_points_to_lead", "points": 7}]},
    )
    assert response.status_code == 200
    assert response.json()["actions"][0]["give_points_to_lead"]["type"] == "105"


async def test_the_proxy_merges_query_parameters_into_the_form(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/connections/kartra/proxy/api",
        params={"api_key": "k", "api_password": "p", "app_id": "a"},
        content=phpform.encode({"get_lead": {"email": "henry.jones.1@example.com"}}),
        headers=FORM,
    )
    assert response.json()["lead_details"]["id"] == "1"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"{broken", "application/json", id="JSON that does not parse"),
        pytest.param(b"[1, 2]", "application/json", id="JSON that is not an object"),
    ],
)
async def test_a_json_proxy_body_kartra_cannot_read_is_answered_224(
    client: httpx2.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/connections/kartra/proxy/api", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 200
    assert response.json()["type"] == "224"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/api", 405, id="GET"),
        pytest.param("PUT", "/", 405, id="PUT"),
        pytest.param("DELETE", "/api", 405, id="DELETE"),
        pytest.param("POST", "/v2/leads", 404, id="a path Kartra does not have"),
    ],
)
async def test_the_proxy_answers_as_kartras_web_server_for_anything_but_a_post_to_its_api(
    client: httpx2.AsyncClient, sandbox: Sandbox, method: str, path: str, status: int
) -> None:
    before = snapshot(sandbox)
    response = await client.request(
        method, f"/connections/kartra/proxy{path}", content=phpform.encode({"get_lead": {"id": "1"}}), headers=FORM
    )
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "Error"
    assert "type" not in body  # Kartra's own answer, not a Membrane error body
    assert snapshot(sandbox) == before


async def test_the_proxy_through_an_unknown_connection_is_membranes_404(client: httpx2.AsyncClient) -> None:
    response = await client.post("/connections/nope/proxy/api", content=b"", headers=FORM)
    assert response.status_code == 404
    assert error_body(response)["key"] == "not_found"


# -- unknown routes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/no/such/route", 404, id="unknown path"),
        pytest.param("GET", "/integrations", 404, id="a Membrane route the sandbox does not serve"),
        pytest.param("DELETE", "/connections", 405, id="wrong method"),
        pytest.param("PATCH", "/actions/get-lead", 405, id="wrong method on an action"),
    ],
)
async def test_a_request_no_route_serves_is_answered_with_membranes_error_body(
    client: httpx2.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    body = error_body(response)
    assert body["type"] == "bad_request"
    assert body.get("key") == ("not_found" if status == 404 else None)


# -- admin routes ---------------------------------------------------------------------------------------


async def test_state_counts_every_kind_of_record_and_names_samples(
    client: httpx2.AsyncClient, sandbox: Sandbox
) -> None:
    body = await state(client)
    counts = body["counts"]
    assert counts["leads"] == len(sandbox.account.leads) == 120
    assert counts["action_runs"] == 0
    assert all(counts[kind] > 0 for kind in counts if kind != "action_runs")
    samples = body["samples"]
    assert {
        "lead",
        "deleted_lead",
        "refundable_transaction",
        "refunded_transaction",
        "active_subscription",
        "cancelled_subscription",
        "paused_subscription",
        "lead_with_membership",
    } <= set(samples)
    assert body["connections"] == [sandbox.connections[0]["id"]]
    deleted = await output(client, "get-lead", {"email": samples["deleted_lead"]["email"]})
    assert deleted["type"] == "245"
    assert (await lead(client, email=samples["lead"]["email"]))["id"] == samples["lead"]["id"]


async def test_state_counts_action_runs_and_new_records(client: httpx2.AsyncClient) -> None:
    before = (await state(client))["counts"]
    await output(client, "create-lead", {"email": "counted@example.com"})
    after = (await state(client))["counts"]
    assert after["leads"] == before["leads"] + 1
    assert after["action_runs"] == before["action_runs"] + 1


async def test_reset_reseeds_the_account_and_forgets_runs_requests_and_faults(
    client: httpx2.AsyncClient, sandbox: Sandbox
) -> None:
    await output(client, "create-lead", {"email": "forgotten@example.com"})
    assert (await client.put("/_sandbox/faults", json={"route": "GET /search", "status": 500})).status_code == 200
    reset = await client.post("/_sandbox/reset", json={"seed": 11, "leads": 30})
    assert reset.status_code == 200
    assert reset.json()["counts"]["leads"] == 30
    assert reset.json()["counts"]["action_runs"] == 0
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}
    assert (await client.get("/_sandbox/requests")).json() == {"requests": []}
    assert (await output(client, "get-lead", {"email": "forgotten@example.com"}))["type"] == "234"
    assert (sandbox.config.seed, sandbox.config.leads) == (11, 30)


async def test_reset_without_a_body_reseeds_as_configured(client: httpx2.AsyncClient, sandbox: Sandbox) -> None:
    pristine = snapshot(sandbox)
    await output(client, "give-points-to-lead", {"lead_id": "1", "points": 3})
    assert snapshot(sandbox) != pristine
    assert (await client.post("/_sandbox/reset")).status_code == 200
    assert snapshot(sandbox) == pristine


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"leads": "many"}, id="leads not a number"),
        pytest.param({"leads": -1}, id="negative leads"),
        pytest.param({"seed": 1.5}, id="seed not an integer"),
    ],
)
async def test_reset_refuses_settings_it_cannot_use(
    client: httpx2.AsyncClient, sandbox: Sandbox, body: dict[str, Any]
) -> None:
    before = snapshot(sandbox)
    response = await client.post("/_sandbox/reset", json=body)
    assert response.status_code == 400
    assert error_body(response)["type"] == "bad_request"
    assert snapshot(sandbox) == before


async def test_fault_rules_are_listed_replaced_added_and_cleared(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}
    put = await client.put("/_sandbox/faults", json=[{"route": "GET /search", "status": 503}])
    assert [r["route"] for r in put.json()["faults"]] == ["GET /search"]
    added = await client.post("/_sandbox/faults", json={"route": "POST /act", "latency_ms": 5})
    assert [r["route"] for r in added.json()["faults"]] == ["GET /search", "POST /act"]
    replaced = await client.put("/_sandbox/faults", json={"route": "*", "status": 429, "times": 1})
    assert [(r["route"], r["status"], r["times"]) for r in replaced.json()["faults"]] == [("*", 429, 1)]
    listed = (await client.get("/_sandbox/faults")).json()
    assert listed == replaced.json()
    assert (await client.delete("/_sandbox/faults")).json() == {"faults": []}
    assert (await client.get("/_sandbox/faults")).json() == {"faults": []}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not JSON"),
        pytest.param(b"42", id="neither an object nor a list"),
        pytest.param(b"[1]", id="a rule that is not an object"),
        pytest.param(b'{"route": "*", "bogus": 1}', id="an unknown setting"),
        pytest.param(b'{"status": 200}', id="a status that is not an error"),
        pytest.param(b'{"status": "500"}', id="a status that is not a number"),
        pytest.param(b'{"rate": 2}', id="a rate over 1"),
        pytest.param(b'{"rate": "half"}', id="a rate that is not a number"),
        pytest.param(b'{"malformed": 1}', id="a flag that is not a boolean"),
        pytest.param(b'{"route": 5}', id="a route that is not text"),
        pytest.param(b'{"pad_bytes": -1}', id="negative padding"),
        pytest.param(b'{"pad_bytes": 1.5}', id="padding that is not a whole number"),
    ],
)
async def test_a_fault_rule_the_sandbox_cannot_apply_is_refused_and_the_rules_stay(
    client: httpx2.AsyncClient, content: bytes
) -> None:
    await client.put("/_sandbox/faults", json={"route": "GET /search", "status": 503})
    response = await client.put("/_sandbox/faults", content=content)
    assert response.status_code == 400
    assert error_body(response)["type"] == "bad_request"
    assert [r["route"] for r in (await client.get("/_sandbox/faults")).json()["faults"]] == ["GET /search"]


async def test_the_request_log_records_every_api_request_but_no_admin_request(
    client: httpx2.AsyncClient, connection_id: str
) -> None:
    await client.get("/connections")
    await client.post("/actions/get-lead/run", params={"connectionId": connection_id}, json={"input": {}})
    await client.get("/_sandbox/state")
    logged = (await client.get("/_sandbox/requests")).json()["requests"]
    assert logged == [
        {"method": "GET", "path": "/connections", "query": ""},
        {"method": "POST", "path": "/actions/get-lead/run", "query": f"connectionId={connection_id}"},
    ]
    assert (await client.delete("/_sandbox/requests")).json() == {"requests": []}
    assert (await client.get("/_sandbox/requests")).json() == {"requests": []}


# -- authentication on every route ------------------------------------------------------------------

ROUTES = [
    ("GET", "/connections"),
    ("GET", "/connections/kartra"),
    ("POST", "/connections/kartra/actions/give-points-to-lead/run"),
    ("GET", "/connections/kartra/proxy/api"),
    ("POST", "/connections/kartra/proxy/api"),
    ("PUT", "/connections/kartra/proxy/api"),
    ("PATCH", "/connections/kartra/proxy/api"),
    ("DELETE", "/connections/kartra/proxy/api"),
    ("GET", "/search?q=kartra"),
    ("POST", "/connection-requests"),
    ("GET", "/connection-requests/unknown"),
    ("GET", "/actions"),
    ("GET", "/actions/get-lead"),
    ("POST", "/actions/give-points-to-lead/run"),
    ("GET", "/action?integrationKey=kartra&key=get-lead"),
    ("POST", "/action/run?integrationKey=kartra&key=give-points-to-lead"),
    ("POST", "/action-instance/run?autoCreate=true&integrationKey=kartra&parentKey=give-points-to-lead"),
    ("POST", "/act"),
    ("GET", "/action-run-logs"),
    ("GET", "/action-run-logs/unknown"),
    ("GET", "/_sandbox/state"),
    ("POST", "/_sandbox/reset"),
    ("GET", "/_sandbox/faults"),
    ("PUT", "/_sandbox/faults"),
    ("POST", "/_sandbox/faults"),
    ("DELETE", "/_sandbox/faults"),
    ("GET", "/_sandbox/requests"),
    ("DELETE", "/_sandbox/requests"),
    ("GET", "/_sandbox/actions"),
    ("POST", "/_sandbox/actions"),
    ("DELETE", "/_sandbox/actions"),
    ("GET", "/no/such/route"),
]
# A body that would change the account if it were let through.
_WRITE = {"lead_id": "1", "points": 50}
_BODIES: dict[str, dict[str, Any]] = {
    "/connections/kartra/actions/give-points-to-lead/run": _WRITE,
    "/actions/give-points-to-lead/run": {"input": _WRITE},
    "/action/run": {"input": _WRITE},
    "/action-instance/run": _WRITE,
    "/act": {"key": "give-points-to-lead", "input": _WRITE},
    "/connections/kartra/proxy/api": {"lead": {"id": "1"}, "actions": [{"cmd": "give_points_to_lead", "points": 50}]},
    "/_sandbox/reset": {"leads": 1},
    "/_sandbox/faults": {"route": "*", "status": 500},
}


def test_the_auth_table_covers_every_route_but_the_connect_page(sandbox: Sandbox) -> None:
    for route in sandbox.routes.routes:
        assert isinstance(route, Route)
        if route.path.startswith("/_sandbox/connect/"):
            continue
        for method in (route.methods or set()) - {"HEAD"}:
            assert any(m == method and route.path_regex.match(path.partition("?")[0]) for m, path in ROUTES), (
                f"{method} {route.path} is missing from ROUTES"
            )


@pytest.fixture
def tiny() -> Iterator[Sandbox]:
    """A five-lead sandbox: the auth matrix needs every route, not a big account."""
    box = Sandbox(SandboxConfig(leads=5))
    yield box
    box.close()


def _jwt(sandbox: Sandbox, *, secret: str | None = None, **claims: Any) -> str:
    config = sandbox.config
    payload = {"id": config.tenant_key, "iss": config.workspace_key, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, secret or config.workspace_secret, algorithm="HS256")


CREDENTIALS: list[Any] = [
    pytest.param(lambda box: None, id="no header"),
    pytest.param(lambda box: "Bearer not-the-sandbox-token", id="wrong token"),
    pytest.param(lambda box: "Bearer ", id="empty bearer"),
    pytest.param(lambda box: f"Basic {box.token}", id="not a bearer"),
    pytest.param(lambda box: "Bearer eyJhbGciOiJIUzI1NiJ9.not-json.sig", id="malformed JWT"),
    pytest.param(lambda box: f"Bearer {_jwt(box, exp=int(time.time()) - 60)}", id="expired JWT"),
    pytest.param(lambda box: f"Bearer {_jwt(box, secret='another-secret-of-32-bytes-or-more!')}", id="wrong secret"),
    pytest.param(lambda box: f"Bearer {_jwt(box, iss='another-workspace')}", id="another workspace"),
]


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_a_request_without_valid_credentials_and_does_nothing(
    tiny: Sandbox, method: str, path: str, credential: Callable[[Sandbox], str | None]
) -> None:
    sandbox = tiny
    header = credential(sandbox)
    before = snapshot(sandbox)
    async with http_client(sandbox, token="") as client:
        response = await client.request(
            method,
            path,
            json=_BODIES.get(path.partition("?")[0]),
            headers={"authorization": header} if header is not None else {},
        )
    assert response.status_code == 401
    body = error_body(response)
    assert set(body) == {"type", "key", "message"}
    assert (body["type"], body["key"]) == ("bad_request", "not_authenticated")
    assert snapshot(sandbox) == before
    assert sandbox.faults.rules == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_denies_a_token_for_another_tenant(tiny: Sandbox, method: str, path: str) -> None:
    sandbox = tiny
    before = snapshot(sandbox)
    async with http_client(sandbox, token=_jwt(sandbox, id="another-tenant")) as client:
        response = await client.request(method, path, json=_BODIES.get(path.partition("?")[0]))
    assert response.status_code == 403
    body = error_body(response)
    assert (body["type"], body["key"]) == ("bad_request", "access_denied")
    assert snapshot(sandbox) == before


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"id": "sandbox-tenant", "iss": "sandbox-workspace"}, id="SDK style id and iss"),
        pytest.param({"workspaceKey": "sandbox-workspace", "tenantKey": "sandbox-tenant"}, id="documented style"),
    ],
)
async def test_a_jwt_signed_with_the_workspace_secret_for_the_sandbox_tenant_is_accepted(
    sandbox: Sandbox, claims: dict[str, str]
) -> None:
    token = jwt.encode({**claims, "exp": int(time.time()) + 600}, sandbox.config.workspace_secret, algorithm="HS256")
    assert token != sandbox.token
    async with http_client(sandbox, token=token) as client:
        response = await client.get("/connections")
    assert response.status_code == 200
    assert len(response.json()["items"]) == 1


async def test_the_connect_page_needs_no_token(client: httpx2.AsyncClient, sandbox: Sandbox) -> None:
    request = (await client.post("/connection-requests", json={"integrationKey": "kartra"})).json()
    async with http_client(sandbox, token="") as browser:
        assert (await browser.get(f"/_sandbox/connect/{request['requestId']}")).status_code == 200
