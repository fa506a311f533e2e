"""The standalone sandbox answers every operation of Membrane's published API subset as the spec
says: each request is one the spec allows (or, for the error cases, one it forbids), each success
is validated against the operation's response schema by openapi-core, and each error carries
Membrane's `ErrorData` body. A change that drifts from Membrane fails here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

from kartra_mcp.sandbox.actions import BY_KEY
from tests.processes import standalone_sandbox

SPEC = Path(__file__).with_name("membrane-openapi-subset.json")
# The project's reference copy, beside a clone as CI lays it out (../shared); absent in other clones.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "membrane-openapi-subset.json"
SERVER = "https://api.getmembrane.com"
# Keywords that give an object schema a structure; without any, the generator meant "any value".
_STRUCTURE = frozenset({"properties", "additionalProperties", "required", "items", "allOf", "anyOf", "oneOf", "$ref"})


def any_value(node: Any) -> Any:
    """A copy of a spec in which the generator's bare `{"type": "object"}` reads as any value."""
    if isinstance(node, list):
        return [any_value(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: any_value(value) for key, value in node.items()}
    if copy.get("type") == "object" and not _STRUCTURE & set(copy):
        del copy["type"]
    return copy


def _load() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC.read_text())
    return spec


def _operations(spec: dict[str, Any]) -> set[str]:
    return {op["operationId"] for item in spec["paths"].values() for op in item.values()}


@dataclass
class _Request:
    """An httpx2 request as openapi-core reads one, addressed to Membrane's published server."""

    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None
    host_url: str = SERVER

    @classmethod
    def of(cls, request: httpx2.Request) -> _Request:
        query = ImmutableMultiDict(list(request.url.params.multi_items()))
        return cls(
            path=request.url.path,
            method=request.method.lower(),
            parameters=RequestParameters(query=query, header=Headers(list(request.headers.items()))),
            content_type=request.headers.get("content-type", ""),
            body=request.content or None,
        )


@dataclass(frozen=True)
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None

    @classmethod
    def of(cls, response: httpx2.Response) -> _Response:
        return cls(
            response.status_code,
            response.headers.get("content-type", ""),
            Headers(list(response.headers.items())),
            response.content,
        )


class Membrane:
    """The standalone sandbox behind a client that holds every exchange to the spec."""

    def __init__(self, http: httpx2.Client, spec: dict[str, Any]) -> None:
        self.http = http
        self.api = OpenAPI.from_dict(spec)
        error = spec["components"]["schemas"]["ActionRunLogRecordApiResponseDto__schema0"]
        self.error = OAS30Validator({**error, "components": spec["components"]})
        self.connection: str = self.ok("GET", "/connections")["items"][0]["id"]

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request the spec allows, answered with a success the spec describes."""
        response = self.http.request(method, path, **kwargs)
        self.api.validate_request(_Request.of(response.request))
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text[:300]}"
        self.api.validate_response(_Request.of(response.request), _Response.of(response))
        return response.json()

    def refused(self, method: str, path: str, status: int, *, spec_allows: bool, **kwargs: Any) -> dict[str, Any]:
        """An error answer in Membrane's `ErrorData` shape; `spec_allows` says whether the spec
        itself accepts the request (a bound the spec sets must be one the sandbox enforces)."""
        response = self.http.request(method, path, **kwargs)
        errors = list(self.api.iter_request_errors(_Request.of(response.request)))
        assert bool(errors) is not spec_allows, f"{method} {path}: spec_allows={spec_allows}, but {errors}"
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:300]}"
        body: dict[str, Any] = response.json()
        self.error.validate(body)
        assert body["type"] in ("bad_request", "dependency_error"), body
        return body


@pytest.fixture(scope="module")
def membrane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Membrane]:
    with (
        standalone_sandbox(tmp_path_factory.mktemp("contract")) as sandbox,
        httpx2.Client(
            base_url=sandbox.url,
            headers={"Authorization": f"Bearer {sandbox.token}"},
            timeout=30,
            trust_env=False,
        ) as http,
    ):
        yield Membrane(http, any_value(_load()))


# -- one check per operation ---------------------------------------------------------------------


def list_connections(m: Membrane) -> None:
    page = m.ok("GET", "/connections", params={"limit": 1, "integrationKey": "kartra", "connected": "true"})
    assert [c["id"] for c in page["items"]] == [m.connection] and "cursor" not in page
    assert m.ok("GET", "/connections", params={"integrationKey": "hubspot"}) == {"items": []}
    m.refused("GET", "/connections", 400, spec_allows=False, params={"limit": 1001})


def get_connection(m: Membrane) -> None:
    assert m.ok("GET", f"/connections/{m.connection}")["id"] == m.connection
    assert m.ok("GET", "/connections/kartra", params={"wait": "true", "timeout": 5})["id"] == m.connection
    assert m.refused("GET", "/connections/000000000000000000000000", 404, spec_allows=True)["key"] == "not_found"
    m.refused("GET", "/connections/kartra", 400, spec_allows=False, params={"timeout": 61})


def search_workspace_elements(m: Membrane) -> None:
    found = m.ok("GET", "/search", params={"q": "kartra", "elementType": "connector", "limit": 100})
    assert [hit["element"]["key"] for hit in found["items"]] == ["kartra"]
    assert m.ok("GET", "/search", params={"q": "hubspot"})["items"] == []
    m.refused("GET", "/search", 400, spec_allows=False, params={"q": "kartra", "limit": 101})
    m.refused("GET", "/search", 400, spec_allows=False, params={"q": "k" * 201})
    m.refused("GET", "/search", 400, spec_allows=False, params={"q": "kartra", "elementType": "gadget"})
    m.refused("GET", "/search", 400, spec_allows=False)


def list_actions(m: Membrane) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"connectionId": m.connection, "limit": 10}
    pages = 0
    while True:
        page = m.ok("GET", "/actions", params=params)
        seen += [a["key"] for a in page["items"]]
        pages += 1
        if "cursor" not in page:
            break
        params["cursor"] = page["cursor"]
    assert pages == 4 and sorted(seen) == sorted(BY_KEY)  # 31 actions: three full pages and one
    ranked = m.ok("GET", "/actions", params={"connectionId": m.connection, "intent": "refund a payment"})
    assert ranked["items"][0]["key"] == "refund-transaction"
    m.refused("GET", "/actions", 400, spec_allows=False, params={"connectionId": m.connection, "intent": "x" * 201})
    m.refused("GET", "/actions", 400, spec_allows=False, params={"limit": 0})


def get_action(m: Membrane) -> None:
    action = BY_KEY["refund-transaction"]
    for selector in (action.id, action.key, f"kartra.{action.key}"):
        assert m.ok("GET", f"/actions/{selector}")["id"] == action.id
    assert m.refused("GET", "/actions/no-such-action", 404, spec_allows=True)["key"] == "not_found"


def run_action(m: Membrane) -> None:
    run = m.ok(
        "POST",
        f"/actions/{BY_KEY['get-lead'].id}/run",
        params={"connectionId": m.connection},
        json={"input": {"lead_id": "1"}},
    )
    assert run["output"]["lead_details"]["id"] == "1" and run["actionRunId"]
    bad = m.refused(
        "POST",
        "/actions/give-points-to-lead/run",
        400,
        spec_allows=True,
        params={"connectionId": m.connection},
        json={"input": {"lead_id": "1", "points": "ten"}},
    )
    assert bad["data"]["actionRunId"]


def act(m: Membrane) -> None:
    by_id = m.ok(
        "POST", "/act", json={"id": BY_KEY["get-lead"].id, "connectionId": m.connection, "input": {"lead_id": "1"}}
    )
    by_key = m.ok("POST", "/act", json={"key": "get-lead", "integrationKey": "kartra", "input": {"lead_id": "1"}})
    assert by_id["output"] == by_key["output"]
    api = {
        "method": "POST",
        "path": "/",
        "body": "get_lead%5Bid%5D=1",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    raw = m.ok("POST", "/act", json={"connectionId": m.connection, "api": api})
    assert raw["output"]["lead_details"]["id"] == "1"
    m.refused("POST", "/act", 400, spec_allows=True, json={})
    m.refused("POST", "/act", 400, spec_allows=True, json={"key": "get-lead", "api": {"method": "POST", "path": "/"}})
    m.refused("POST", "/act", 400, spec_allows=False, json={"key": "get-lead", "action": {"id": "x"}})
    m.refused("POST", "/act", 400, spec_allows=False, json={"api": {"method": "TRACE", "path": "/"}})
    upstream = m.refused("POST", "/act", 405, spec_allows=True, json={"api": {"method": "GET", "path": "/"}})
    assert upstream["data"]["response"]["status"] == 405 and upstream["data"]["actionRunId"]


def get_action_run_log(m: Membrane) -> None:
    runs = [
        m.ok("POST", "/act", json={"key": "get-lead", "input": {"lead_id": "1"}, "meta": {"from": "contract"}}),
        m.ok("POST", "/act", json={"api": {"method": "POST", "path": "/", "body": {"get_lead": {"id": "1"}}}}),
        m.ok("POST", f"/actions/{BY_KEY['get-lead'].id}/run", json={"input": {"lead_id": "1"}}),
    ]
    failed = m.refused("POST", "/act", 400, spec_allows=True, json={"key": "give-points-to-lead", "input": {}})
    ids = [run["actionRunId"] for run in runs] + [failed["data"]["actionRunId"]]
    logs = [m.ok("GET", f"/action-run-logs/{run_id}") for run_id in ids]
    assert [log["status"] for log in logs] == ["success", "success", "success", "error"]
    assert [log["action"]["type"] for log in logs] == ["key", "api", "key", "key"]
    assert "error" not in logs[0] and logs[3]["error"]["message"]
    assert m.refused("GET", "/action-run-logs/000000000000000000000000", 404, spec_allows=True)["key"] == "not_found"


CHECKS: dict[str, Callable[[Membrane], None]] = {
    "listConnections": list_connections,
    "getConnection": get_connection,
    "searchWorkspaceElements": search_workspace_elements,
    "listActions": list_actions,
    "getAction": get_action,
    "runAction": run_action,
    "act": act,
    "getActionRunLog": get_action_run_log,
}


def test_every_operation_in_the_published_subset_has_a_check() -> None:
    assert _operations(_load()) == set(CHECKS)


@pytest.mark.parametrize("operation", sorted(CHECKS))
def test_the_sandbox_answers_each_operation_as_membrane_publishes_it(membrane: Membrane, operation: str) -> None:
    CHECKS[operation](membrane)


def test_the_vendored_spec_is_the_reference_verbatim() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"no reference copy at {REFERENCE} (it sits beside CI's clone)")
    assert SPEC.read_bytes() == REFERENCE.read_bytes()


def test_a_bare_object_reads_as_any_value_and_structured_objects_keep_their_type() -> None:
    spec = any_value(_load())
    log = spec["components"]["schemas"]["ActionRunLogRecordApiResponseDto"]["properties"]
    assert "type" not in log["output"] and "type" not in log["input"]
    assert (
        "type"
        not in spec["components"]["schemas"]["ActionRunLogRecordApiResponseDto__schema1"]["properties"]["default"]
    )
    assert log["action"]["type"] == "object" and "properties" in log["action"]
    assert _load()["components"]["schemas"]["ActResponseDto"]["properties"]["output"] == {"type": "object"}
