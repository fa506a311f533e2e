"""Which of Membrane's routes carry runs and raw requests, and how `POST /act` spells them.

Membrane's published API runs everything through `POST /act`: an action as `{id, connectionId,
input}`, a raw request through the connection as `{connectionId, api: {method, path, body?,
headers?, query?}}`, answered `{output, actionRunId}`. It marks `POST /actions/{id}/run`
deprecated and does not describe `/connections/{id}/proxy/{path}` at all, though the official
SDKs (@membranehq/sdk 0.28.3, @integration-app/sdk 1.9.0) still call them and no SDK calls `/act`.
So a deployment may predate `/act`: the client asks it once, with a body that names nothing to
run (`{}`, which `/act` refuses with 400), and uses the old routes only when `/act` is not there
(404 or 405). A real request is never the probe, so falling back can never send a write twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kartra_mcp.errors import MembraneApiError
from kartra_mcp.membrane.models import ProxyResponse

ACT = "/act"
# `/act` with nothing to dispatch: a deployment that serves it refuses it (400), one that does not
# answers as for any unknown route (404, or 405 where the path exists for other methods).
PROBE_BODY: dict[str, Any] = {}
ROUTE_MISSING = frozenset({404, 405})
ACT_SERVED = frozenset({400, 422})
# The methods `/act`'s `api` takes.
API_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_JSON = "application/json"


@dataclass(frozen=True)
class RouteSupport:
    """What a Membrane deployment answers: `/act`, and the connection proxy (None: not asked)."""

    act: bool
    proxy: bool | None = None


def api_request(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    body: bytes | None,
) -> dict[str, Any]:
    """The `api` object of `/act` for a raw request, carrying exactly the bytes' content.

    A JSON body goes as the object it encodes (Membrane's "for JSON APIs, pass a plain object");
    any other body goes as its text, with the request's own Content-Type, so the upstream reads
    what was classified.
    """
    api: dict[str, Any] = {"method": method, "path": path}
    if query:
        api["query"] = dict(query)
    if headers:
        api["headers"] = dict(headers)
    if body is not None:
        text = body.decode("utf-8")
        media = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
        api["body"] = json.loads(text) if media.split(";", 1)[0].strip().lower() == _JSON else text
    return api


def answer(output: Any) -> ProxyResponse:
    """An `/act` raw request's output, as the proxy would have answered it."""
    return ProxyResponse(200, {"content-type": _JSON}, _encode(output))


def upstream_answer(error: MembraneApiError) -> ProxyResponse | None:
    """The upstream's own error answer when Membrane's error carries it (`data.response`), else None."""
    data = error.data if isinstance(error.data, Mapping) else {}
    response = data.get("response")
    if not isinstance(response, Mapping) or not isinstance(response.get("status"), int):
        return None
    headers = response.get("headers")
    return ProxyResponse(
        response["status"],
        {str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {},
        _encode(response.get("data")),
    )


def _encode(value: Any) -> bytes:
    """The body the upstream sent: its JSON re-encoded, its text as it was, nothing as empty.

    Text stays text (never a JSON string), so an HTML page or a cut-off body is judged the same
    whichever route carried it.
    """
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()
