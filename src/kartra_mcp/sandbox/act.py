"""`POST /act` as Membrane publishes it, and the action run logs every run leaves.

The request is `ActRequestDto`: exactly one dispatch (`id`, `key`, `api` or `code`), the
connection or integration to run on, `input` and `meta`, nothing else. An `api` dispatch is a raw
request through the connection, `{method, path, body?, headers?, query?}` (`url` and `data` are
Membrane's aliases of `path` and `body`). Every run, whatever route carried it, is logged as
`ActionRunLogRecordApiResponseDto`: the fields the spec requires always present, optional ones
absent rather than null, and `action` the `/act` body that replays the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kartra_mcp.errors import MembraneRefusal

DISPATCHES = ("id", "key", "api", "code")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
_FIELDS = frozenset({*DISPATCHES, "integrationId", "integrationKey", "connectionId", "connectionKey", "input", "meta"})
_TEXT_FIELDS = ("id", "key", "code", "integrationId", "integrationKey", "connectionId", "connectionKey")
_API_FIELDS = frozenset({"method", "path", "body", "headers", "query", "url", "data"})


@dataclass(frozen=True)
class ApiCall:
    """An `api` dispatch: one raw request through the connection."""

    method: str
    path: str
    body: Any
    headers: Mapping[str, str]
    query: Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class ActCall:
    """A checked `/act` body."""

    dispatch: str
    target: str | None
    api: ApiCall | None
    body: Mapping[str, Any]


def parse(body: Mapping[str, Any]) -> ActCall:
    """Check an `/act` body as the published schema does; a 400 names what to change."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise MembraneRefusal(400, f"Unknown field(s) in the /act body: {', '.join(unknown)}")
    chosen = [k for k in DISPATCHES if k in body]
    if len(chosen) != 1:
        raise MembraneRefusal(400, "Give exactly one of id, key, api or code")
    for name in _TEXT_FIELDS:
        if name in body and not isinstance(body[name], str):
            raise MembraneRefusal(400, f"{name} must be a string")
    if "meta" in body and not isinstance(body["meta"], Mapping):
        raise MembraneRefusal(400, "meta must be an object")
    dispatch = chosen[0]
    if dispatch != "api":
        return ActCall(dispatch, str(body[dispatch]), None, body)
    return ActCall(dispatch, None, _api(body["api"]), body)


def _api(api: Any) -> ApiCall:
    if not isinstance(api, Mapping):
        raise MembraneRefusal(400, "api must be an object: {method, path, body?, headers?, query?}")
    unknown = sorted(set(api) - _API_FIELDS)
    if unknown:
        raise MembraneRefusal(400, f"Unknown field(s) in api: {', '.join(unknown)}")
    method = api.get("method")
    if method not in METHODS:
        raise MembraneRefusal(400, f"api.method must be one of {', '.join(METHODS)}")
    path = api.get("path", api.get("url"))
    if not isinstance(path, str):
        raise MembraneRefusal(400, "api.path is required: the path under the connection's base URL")
    headers = api.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise MembraneRefusal(400, "api.headers must be an object of strings")
    query = api.get("query") or {}
    if not isinstance(query, Mapping) or not all(isinstance(v, str | int | float | bool) for v in query.values()):
        raise MembraneRefusal(400, "api.query must be an object of strings, numbers or booleans")
    return ApiCall(str(method), path, api.get("body", api.get("data")), dict(headers), dict(query))


def route_alias(raw: bytes, action_id: Callable[[str], str]) -> str:
    """What an `/act` body runs, as a path the request log and fault rules can name.

    `/act/action/<action id>` for a saved action (named by id or key), `/act/api` for a raw
    request, `/act` when the body names nothing it could run.
    """
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return "/act"
    if not isinstance(body, dict):
        return "/act"
    for dispatch in ("id", "key"):
        if isinstance(body.get(dispatch), str):
            return f"/act/action/{action_id(body[dispatch])}"
    return "/act/api" if "api" in body else "/act"


def upstream_failure(status: int, answer: Any, run_id: str | None) -> MembraneRefusal:
    """An `api` dispatch whose upstream answered an error status: Membrane's error body, the
    upstream's status and body under `data.response`, and the run's id (the run happened)."""
    data: dict[str, Any] = {"response": {"status": status, "data": answer}}
    if run_id is not None:
        data["actionRunId"] = run_id
    return MembraneRefusal(status, f"The external API answered HTTP {status}", type="dependency_error", data=data)


def run_log(
    *,
    run_id: str,
    name: str,
    action_id: str,
    connection: Mapping[str, Any],
    call: Mapping[str, Any],
    dispatch: str,
    output: Any,
    error: str | None,
    created: str,
) -> dict[str, Any]:
    """One run, as `GET /action-run-logs/{id}` answers it."""
    record: dict[str, Any] = {
        "id": run_id,
        "userId": connection["userId"],
        "tenantId": connection["tenantId"],
        "integrationId": connection["integrationId"],
        "connectionId": connection["id"],
        "name": name,
        "integrationActionId": action_id,
        "status": "error" if error else "success",
        "createdAt": created,
        "completedAt": created,
        "duration": 0,
        "action": {**call, "type": dispatch},
    }
    if "input" in call:
        record["input"] = call["input"]
    if output is not None:
        record["output"] = output
    if error:
        record["error"] = {"type": "action_run", "message": error}
    if isinstance(call.get("meta"), Mapping):
        record["meta"] = dict(call["meta"])
    return record
