"""A Membrane-compatible HTTP API for one tenant with Kartra connections, over one Kartra account.

It speaks the subset of Membrane's API that kartra-mcp, Membrane's SDKs and Membrane's own MCP
server use: connections, connection requests, connector search, actions (list, get, run through
`POST /act`; and the deprecated and legacy run routes peers still call), the connection proxy, and
action run logs, with Membrane's pagination, parameter bounds, selectors and error bodies, in the
shapes Membrane's published OpenAPI gives them. Admin routes under `/_sandbox/` reset the account,
show its state and set faults. `SandboxConfig.without` takes routes away, to stand in for a
deployment that does not serve them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jsonschema
import jwt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from kartra_mcp import phpform
from kartra_mcp.errors import MembraneRefusal
from kartra_mcp.sandbox import act, params
from kartra_mcp.sandbox.account import KartraAccount
from kartra_mcp.sandbox.act import ActCall
from kartra_mcp.sandbox.actions import BY_ID, BY_KEY, CATALOG, ActionDef, custom_action, object_id
from kartra_mcp.sandbox.faults import ADMIN_PREFIX, ROUTE_ALIAS, FaultInjector, FaultRule, parse_rules
from kartra_mcp.sandbox.kartra import KartraApi
from kartra_mcp.sandbox.seed import DEFAULT_LEADS, DEFAULT_SEED, seed_account
from kartra_mcp.sandbox.store import MemoryStore, SqliteStore, Store

logger = logging.getLogger(__name__)

INTEGRATION_KEY = "kartra"
_CREATED = "2026-01-05T10:00:00.000Z"
# Where Kartra's one endpoint sits under the connector's base URL is not documented: the base itself
# (`proxy/`) and `proxy/api` both reach it.
_KARTRA_PATHS = ("", "/", "/api", "/api/")
# Routes a sandbox can be started without: `/act`, the connection proxy, the deprecated run route.
OPTIONAL_ROUTES = frozenset({"act", "proxy", "run"})
# The run log's `integrationActionId` for raw requests, which run no saved action.
API_REQUEST_ACTION_ID = object_id("action", "api-request")
_ELEMENT_TYPES = (
    "customer", "app", "connector", "integration", "flow", "flow-instance", "flow-run", "action", "package",
    "action-instance", "connection", "field-mapping", "field-mapping-instance", "data-source",
    "data-source-instance", "data-link-table", "data-link-table-instance", "app-event-type",
    "app-event-subscription", "app-event-log-record", "app-data-schema", "app-data-schema-instance",
    "external-event-subscription", "external-event-log-record", "external-event-pull", "external-event-type",
    "screen", "action-run-log-record", "external-api-log-record", "incoming-webhook-log-record",
    "connected-product",
)  # fmt: skip
_LAYERS = ("universal", "integration", "connection")
_RUN_LOG_FILTERS = (
    "integrationActionId", "universalActionId", "connectionActionId", "integrationId", "connectionId",
    "tenantId", "userId", "status", "externalAppId",
)  # fmt: skip
_WORDS = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset({"the", "and", "for", "from", "with", "into", "onto", "this", "that", "their", "all", "its"})
_SYNONYMS = {
    "remove": {"unassign", "unsubscribe", "revoke"},
    "delete": {"unassign", "unsubscribe", "revoke"},
    "add": {"assign", "subscribe", "give", "grant", "create"},
    "stop": {"cancel", "unsubscribe", "pause"},
    "end": {"cancel"},
    "contact": {"lead"},
    "customer": {"lead"},
    "payment": {"transaction"},
    "purchase": {"transaction"},
    "order": {"transaction"},
    "access": {"membership"},
}


def _terms(text: str, *, synonyms: bool = False) -> set[str]:
    """Words of a text, stemmed crudely, without stop words; with `synonyms`, their synonyms too."""
    words = {w.rstrip("s") for w in _WORDS.findall(text.casefold()) if len(w) > 2 and w not in _STOP_WORDS}
    return words | {s for w in words for s in _SYNONYMS.get(w, ())} if synonyms else words


@dataclass
class SandboxConfig:
    """How a sandbox starts: who may call it, what account it holds, which faults it injects."""

    token: str | None = None
    workspace_key: str = "sandbox-workspace"
    workspace_secret: str = "sandbox-workspace-secret-not-for-production"
    tenant_key: str = "sandbox-tenant"
    seed: int = DEFAULT_SEED
    leads: int = DEFAULT_LEADS
    db: Path | None = None
    connections: int = 1
    fault_seed: int = 0
    faults: Sequence[FaultRule] = ()
    base_url: str = "http://sandbox.kartra-mcp.invalid"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Routes this deployment does not serve (see OPTIONAL_ROUTES): they answer 404 as unknown routes do.
    without: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.without) - OPTIONAL_ROUTES
        if unknown:
            raise ValueError(f"unknown route(s) {sorted(unknown)}; a sandbox can go without {sorted(OPTIONAL_ROUTES)}")


def mint_tenant_token(config: SandboxConfig) -> str:
    """A tenant token shaped as Membrane's SDK mints them, signed with the sandbox's workspace secret."""
    claims = {"id": config.tenant_key, "iss": config.workspace_key, "name": "Sandbox tenant"}
    return jwt.encode(claims, config.workspace_secret, algorithm="HS256")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page(
    items: Sequence[Any], query: Mapping[str, str], *, default_limit: int = 50, max_limit: int = 1000
) -> dict[str, Any]:
    """Membrane's pagination: `limit` 1..1000 (or less) and an opaque `cursor`; a cursor only when more follows."""
    limit = params.integer(query, "limit", 1, max_limit, default_limit)
    assert limit is not None
    try:
        start = int(query.get("cursor") or 0)
    except ValueError:
        raise MembraneRefusal(400, "cursor must be a cursor returned by this API") from None
    if start < 0 or start > len(items):
        raise MembraneRefusal(400, "Unknown cursor")
    page: dict[str, Any] = {"items": list(items[start : start + limit])}
    if start + limit < len(items):
        page["cursor"] = str(start + limit)
    return page


class Sandbox:
    """The sandbox: a Kartra account, the Membrane API over it, and its faults."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.token = self.config.token or mint_tenant_token(self.config)
        self.store: Store = SqliteStore(self.config.db) if self.config.db else MemoryStore()
        if self.store.is_empty():
            self.account = KartraAccount(self.store, self.config.clock)
            seed_account(self.account, seed=self.config.seed, leads=self.config.leads)
        else:
            self.account = KartraAccount.load(self.store, self.config.clock)
        self.kartra = KartraApi(self.account)
        self.integration = {
            "id": object_id("integration", INTEGRATION_KEY),
            "key": INTEGRATION_KEY,
            "name": "Kartra",
            "logoUri": "https://static.integration.app/connectors/kartra/logo.png",
            "connectorId": object_id("connector", INTEGRATION_KEY),
        }
        self.connections: list[dict[str, Any]] = [self._connection(n) for n in range(self.config.connections)]
        self.connection_requests: dict[str, dict[str, Any]] = {}
        self.run_logs: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        # Actions a tenant added to Membrane themselves, by key, listed after the built-in catalog.
        self.custom_actions: dict[str, ActionDef] = {}
        self.routes = Starlette(
            routes=self._routes(),
            exception_handlers={
                MembraneRefusal: self._refusal,
                HTTPException: self._http_error,
                Exception: self._crash,
            },
        )
        self.faults = FaultInjector(self._guard, seed=self.config.fault_seed, rules=self._startup_faults())
        # The sandbox itself is the ASGI app (an object with an async __call__, which servers read as ASGI 3).
        self.app = self

    # -- ASGI plumbing -----------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Record every request that reaches the sandbox, faulted or not, for tests to count.

        An `/act` request is also recorded, and matched by fault rules, under what it runs
        (`/act/action/<action id>`, `/act/api`), since its path alone says nothing.
        """
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            record = {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope.get("query_string", b"").decode(),
            }
            if scope["method"] == "POST" and scope["path"] == "/act" and "act" not in self.config.without:
                raw, receive = await _buffered(receive)
                record["runs"] = scope[ROUTE_ALIAS] = act.route_alias(raw, self._action_id)
            self.requests.append(record)
        await self.faults(scope, receive, send)

    async def _guard(self, scope: Any, receive: Any, send: Any) -> None:
        """Authenticate, record the request, then route it."""
        if scope["type"] == "http":
            request = Request(scope)
            path = scope["path"]
            if not path.startswith(ADMIN_PREFIX + "connect/"):
                refusal = self._authenticate(request.headers.get("authorization", ""))
                if refusal is not None:
                    response = JSONResponse(dict(refusal.body()), status_code=refusal.status)
                    await response(scope, receive, send)
                    return
        await self.routes(scope, receive, send)

    def _authenticate(self, header: str) -> MembraneRefusal | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return MembraneRefusal(
                401, "Authentication required: send Authorization: Bearer <token>", key="not_authenticated"
            )
        if secrets.compare_digest(token.encode(), self.token.encode()):
            return None
        try:
            claims = jwt.decode(token, self.config.workspace_secret, algorithms=["HS256"], options={"require": []})
        except jwt.ExpiredSignatureError:
            return MembraneRefusal(401, "Access token expired", key="not_authenticated")
        except jwt.PyJWTError:
            return MembraneRefusal(401, "Invalid access token", key="not_authenticated")
        if claims.get("iss", claims.get("workspaceKey")) != self.config.workspace_key:
            return MembraneRefusal(401, "Token was not issued for this workspace", key="not_authenticated")
        if claims.get("id", claims.get("tenantKey")) != self.config.tenant_key:
            return MembraneRefusal(403, "This token has no access to the sandbox tenant", key="access_denied")
        return None

    async def _refusal(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MembraneRefusal)
        return JSONResponse(dict(exc.body()), status_code=exc.status)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        key = "not_found" if exc.status_code == 404 else None
        message = f"No route {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
        return JSONResponse(
            dict(MembraneRefusal(exc.status_code, message, key=key).body()), status_code=exc.status_code
        )

    async def _crash(self, request: Request, exc: Exception) -> Response:
        logger.exception("sandbox route %s %s failed", request.method, request.url.path)
        return JSONResponse({"type": "internal", "message": "Internal error"}, status_code=500)

    def _routes(self) -> list[Route]:
        without = self.config.without
        optional = [
            *([] if "act" in without else [Route("/act", self.act, methods=["POST"])]),
            *([] if "run" in without else [Route("/actions/{selector}/run", self.run_action, methods=["POST"])]),
            *(
                []
                if "proxy" in without
                else [
                    Route(
                        "/connections/{selector}/proxy{path:path}",
                        self.proxy,
                        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                    )
                ]
            ),
        ]
        return [
            *optional,
            Route("/connections", self.list_connections, methods=["GET"]),
            Route("/connections/{selector}", self.get_connection, methods=["GET"]),
            Route("/connections/{selector}/actions/{action}/run", self.run_connection_action, methods=["POST"]),
            Route("/search", self.search, methods=["GET"]),
            Route("/connection-requests", self.create_connection_request, methods=["POST"]),
            Route("/connection-requests/{request_id}", self.get_connection_request, methods=["GET"]),
            Route("/actions", self.list_actions, methods=["GET"]),
            Route("/actions/{selector}", self.get_action, methods=["GET"]),
            Route("/action", self.get_action_by_query, methods=["GET"]),
            Route("/action/run", self.run_action_by_query, methods=["POST"]),
            Route("/action-instance/run", self.run_action_instance, methods=["POST"]),
            Route("/action-run-logs", self.list_run_logs, methods=["GET"]),
            Route("/action-run-logs/{run_id}", self.get_run_log, methods=["GET"]),
            Route(ADMIN_PREFIX + "state", self.admin_state, methods=["GET"]),
            Route(ADMIN_PREFIX + "reset", self.admin_reset, methods=["POST"]),
            Route(ADMIN_PREFIX + "faults", self.admin_faults, methods=["GET", "PUT", "POST", "DELETE"]),
            Route(ADMIN_PREFIX + "requests", self.admin_requests, methods=["GET", "DELETE"]),
            Route(ADMIN_PREFIX + "actions", self.admin_actions, methods=["GET", "POST", "DELETE"]),
            Route(ADMIN_PREFIX + "connect/{request_id}", self.admin_connect, methods=["GET"]),
        ]

    # -- connections -------------------------------------------------------------------------

    def _connection(self, index: int) -> dict[str, Any]:
        # Connection ids are Membrane-wide, so each tenant's differ (the default tenant keeps its old ones).
        owner = "" if self.config.tenant_key == SandboxConfig.tenant_key else f"{self.config.tenant_key}/"
        return {
            "id": object_id("connection", f"{owner}kartra-{index}"),
            "name": "Kartra" if index == 0 else f"Kartra ({index + 1})",
            "userId": object_id("user", self.config.tenant_key),
            "tenantId": object_id("tenant", self.config.tenant_key),
            "isTest": False,
            "connected": True,
            "disconnected": False,
            "isDefunct": False,
            "state": "READY",
            "integrationId": self.integration["id"],
            "connectorId": self.integration["connectorId"],
            "createdAt": _CREATED,
            "updatedAt": _CREATED,
            "integration": self.integration,
        }

    def connection(self, selector: str) -> dict[str, Any]:
        """A connection by id, by key, or by integration key/id when there is exactly one."""
        for conn in self.connections:
            if selector in (conn["id"], conn.get("key")):
                return conn
        if selector in (INTEGRATION_KEY, self.integration["id"]) and len(self.connections) == 1:
            return self.connections[0]
        raise MembraneRefusal(404, f"Connection {selector!r} not found", key="not_found")

    async def list_connections(self, request: Request) -> Response:
        q = request.query_params
        for flag in ("includeArchived", "disconnected", "isTest", "includeSecrets"):
            params.boolean(q, flag)
        connected = params.boolean(q, "connected")
        found = [
            c
            for c in self.connections
            if q.get("integrationKey") in (None, INTEGRATION_KEY)
            and q.get("integrationId") in (None, self.integration["id"])
            and q.get("connectorId") in (None, self.integration["connectorId"])
            and connected in (None, True)
            and (not q.get("search") or q["search"].casefold() in c["name"].casefold())
        ]
        return JSONResponse(_page(found, q))

    async def get_connection(self, request: Request) -> Response:
        q = request.query_params
        params.boolean(q, "includeSecrets")
        params.boolean(q, "wait")
        params.integer(q, "timeout", 1, 60)
        return JSONResponse(self.connection(request.path_params["selector"]))

    async def search(self, request: Request) -> Response:
        q = params.text(request.query_params, "q", min_length=1, max_length=200) or ""
        kind = params.choice(request.query_params, "elementType", _ELEMENT_TYPES) or "connector"
        element = {
            "id": self.integration["connectorId"] if kind == "connector" else self.integration["id"],
            "key": INTEGRATION_KEY,
            "name": "Kartra",
            "logoUri": self.integration["logoUri"],
        }
        hits = (
            [{"elementType": kind, "element": element}]
            if (kind in ("connector", "integration", "app") and q.casefold() in "kartra")
            else []
        )
        return JSONResponse(_page(hits, request.query_params, max_limit=100))

    async def create_connection_request(self, request: Request) -> Response:
        body = await self._json(request)
        target = (
            body.get("connectorId")
            or body.get("integrationKey")
            or body.get("integrationId")
            or body.get("connectorKey")
            or body.get("connectionId")
        )
        if target not in (
            self.integration["connectorId"],
            self.integration["id"],
            INTEGRATION_KEY,
            *(c["id"] for c in self.connections),
        ):
            raise MembraneRefusal(404, "Connector not found; search for it with GET /search?q=kartra", key="not_found")
        request_id = secrets.token_hex(12)
        record = {
            "requestId": request_id,
            "tenantId": object_id("tenant", self.config.tenant_key),
            "url": f"{self.config.base_url}{ADMIN_PREFIX}connect/{request_id}",
            "status": "pending",
            "createdAt": _iso(self.config.clock()),
            **{k: v for k, v in body.items() if k in ("connectorId", "integrationKey", "integrationId", "name")},
        }
        self.connection_requests[request_id] = record
        return JSONResponse(record)

    async def get_connection_request(self, request: Request) -> Response:
        found = self.connection_requests.get(request.path_params["request_id"])
        if found is None:
            raise MembraneRefusal(404, "Connection request not found", key="not_found")
        return JSONResponse(found)

    async def admin_connect(self, request: Request) -> Response:
        """The page the person opens to finish connecting Kartra (no bearer: it is their browser)."""
        found = self.connection_requests.get(request.path_params["request_id"])
        if found is None:
            return HTMLResponse("<h1>Unknown or expired connection request</h1>", status_code=404)
        if not self.connections:
            self.connections.append(self._connection(0))
        found.update(status="success", resultConnectionId=self.connections[0]["id"])
        return HTMLResponse("<h1>Kartra is connected (sandbox).</h1><p>You can close this tab.</p>")

    # -- actions -----------------------------------------------------------------------------

    def _action_json(self, action: ActionDef) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": action.id,
            "key": action.key,
            "name": action.name,
            "description": action.description,
            "type": action.type,
            "state": "READY",
            "isDeactivated": False,
            "integrationId": self.integration["id"],
            "integrationKey": INTEGRATION_KEY,
            "createdAt": _CREATED,
            "updatedAt": _CREATED,
            "integration": {k: self.integration[k] for k in ("id", "key", "name", "logoUri")},
        }
        if action.input_schema is not None:
            data["inputSchema"] = action.input_schema
        if action.output_schema is not None:
            data["outputSchema"] = action.output_schema
        return data

    def _action_id(self, selector: str) -> str:
        try:
            return self.action(selector).id
        except MembraneRefusal:
            return selector

    def action(self, selector: str) -> ActionDef:
        """An action by id, key or `kartra.key`."""
        key = selector.removeprefix(INTEGRATION_KEY + ".")
        found = BY_ID.get(selector) or BY_KEY.get(key) or self.custom_actions.get(key)
        found = found or next((a for a in self.custom_actions.values() if a.id == selector), None)
        if found is None:
            raise MembraneRefusal(404, f"Action {selector!r} not found", key="not_found")
        return found

    async def list_actions(self, request: Request) -> Response:
        q = request.query_params
        intent = params.text(q, "intent", max_length=200)
        params.choice(q, "layer", _LAYERS)
        for flag in ("includeArchived", "isUniversal"):
            params.boolean(q, flag)
        connection = q.get("connectionId") or q.get("connectionKey")
        if connection:
            self.connection(connection)
        if q.get("integrationKey") not in (None, INTEGRATION_KEY) or q.get("integrationId") not in (
            None,
            self.integration["id"],
        ):
            return JSONResponse({"items": []})
        actions: Iterable[ActionDef] = [*CATALOG, *self.custom_actions.values()]
        if q.get("search"):
            needle = q["search"].casefold()
            actions = [a for a in actions if needle in a.key or needle in a.name.casefold()]
        if intent and connection:
            actions = self._rank(intent, list(actions))
            return JSONResponse(_page([self._action_json(a) for a in actions], q, default_limit=10))
        return JSONResponse(_page([self._action_json(a) for a in actions], q))

    @staticmethod
    def _rank(intent: str, actions: list[ActionDef]) -> list[ActionDef]:
        """Relevance: the intent's words (stemmed, with a few synonyms) in each action's key and text,
        rarer words counting more. A stand-in for Membrane's semantic ranking, for demos and tests."""
        wanted = _terms(intent, synonyms=True)
        keyed = [(_terms(a.key), _terms(f"{a.key} {a.name} {a.description}")) for a in actions]
        weight = {t: math.log((1 + len(actions)) / (1 + sum(t in text for _, text in keyed))) for t in wanted}
        scored = []
        for position, (action, (key_terms, text_terms)) in enumerate(zip(actions, keyed, strict=True)):
            score = sum(weight[t] * (3 if t in key_terms else 1) for t in wanted & text_terms)
            if score > 0:
                scored.append((-score, position, action))
        return [action for _, _, action in sorted(scored)]

    async def get_action(self, request: Request) -> Response:
        return JSONResponse(self._action_json(self.action(request.path_params["selector"])))

    async def get_action_by_query(self, request: Request) -> Response:
        return JSONResponse(self._action_json(self._action_from_query(request)))

    def _action_from_query(self, request: Request) -> ActionDef:
        q = request.query_params
        if q.get("integrationKey") not in (None, INTEGRATION_KEY):
            raise MembraneRefusal(404, f"Integration {q['integrationKey']!r} not found", key="not_found")
        selector = q.get("key") or q.get("id") or q.get("parentKey")
        if not selector:
            raise MembraneRefusal(400, "Give the action's key or id")
        return self.action(selector)

    def _resolve_connection(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Membrane's order: connectionId, connectionKey, the integration's default, the workspace default."""
        selector = query.get("connectionId") or query.get("connectionKey")
        if selector:
            return self.connection(str(selector))
        for name, ours in (("integrationKey", INTEGRATION_KEY), ("integrationId", self.integration["id"])):
            if query.get(name) not in (None, ours):
                raise MembraneRefusal(404, f"Integration {query[name]!r} not found", key="not_found")
        if not self.connections:
            raise MembraneRefusal(
                400, "No Kartra connection; connect Kartra first", type="connection", key="connection_is_defunct"
            )
        return self.connections[0]

    async def run_action(self, request: Request) -> Response:
        params.choice(request.query_params, "layer", _LAYERS)
        action = self.action(request.path_params["selector"])
        body = await self._json(request)
        return self._run(action, self._resolve_connection(request.query_params), body.get("input") or {})

    async def run_action_by_query(self, request: Request) -> Response:
        body = await self._json(request)
        return self._run(
            self._action_from_query(request), self._resolve_connection(request.query_params), body.get("input") or {}
        )

    async def run_connection_action(self, request: Request) -> Response:
        connection = self.connection(request.path_params["selector"])
        return self._run(self.action(request.path_params["action"]), connection, await self._json(request))

    async def run_action_instance(self, request: Request) -> Response:
        return self._run(
            self._action_from_query(request),
            self._resolve_connection(request.query_params),
            await self._json(request),
            legacy=True,
        )

    async def act(self, request: Request) -> Response:
        call = act.parse(await self._json(request))
        connection = self._resolve_connection(call.body)
        if call.dispatch == "code":
            raise MembraneRefusal(400, "The sandbox does not run custom code")
        if call.api is None:
            assert call.target is not None
            return self._run(self.action(call.target), connection, call.body.get("input") or {}, dispatched=call)
        api = call.api
        path = api.path
        if api.query:
            path = f"{path}{'&' if '?' in path else '?'}{phpform.encode(dict(api.query))}"
        body = api.body if api.body is not None else ""
        status, payload = self._kartra_call(api.method, path, body, api.headers)
        name = f"{api.method} {api.path}"
        if status >= 400:
            run_id = self._log(name, API_REQUEST_ACTION_ID, connection, call, None, error=f"HTTP {status}")
            raise act.upstream_failure(status, payload, run_id)
        run_id = self._log(name, API_REQUEST_ACTION_ID, connection, call, payload)
        return JSONResponse({"output": payload, "actionRunId": run_id})

    def _run(
        self,
        action: ActionDef,
        connection: dict[str, Any],
        data: Any,
        *,
        legacy: bool = False,
        dispatched: ActCall | None = None,
    ) -> Response:
        if not isinstance(data, Mapping):
            raise MembraneRefusal(400, "Action input must be an object")
        # A run through a deprecated or legacy route is logged as the /act body that replays it.
        call = dispatched or ActCall(
            "key", action.key, None, {"key": action.key, "connectionId": connection["id"], "input": data}
        )
        if action.input_schema is not None:
            problems = sorted(jsonschema.Draft7Validator(action.input_schema).iter_errors(data), key=str)
            if problems:
                run_id = self._log(
                    action.name,
                    action.id,
                    connection,
                    call,
                    None,
                    error=f"Input validation failed: {problems[0].message}",
                )
                detail = [{"path": "/".join(str(p) for p in e.absolute_path), "message": e.message} for e in problems]
                raise MembraneRefusal(
                    400,
                    f"Input validation failed: {problems[0].message}",
                    data={"errors": detail, "actionRunId": run_id},
                )
        response = self.kartra.handle(action.build(data))
        self.account.commit()
        output = action.pick(response)
        run_id = self._log(action.name, action.id, connection, call, output)
        return JSONResponse({"output": output, "actionRunId": run_id, **({"logs": []} if legacy else {})})

    def _log(
        self,
        name: str,
        action_id: str,
        connection: Mapping[str, Any],
        call: ActCall,
        output: Any,
        *,
        error: str | None = None,
    ) -> str:
        run_id = secrets.token_hex(12)
        self.run_logs[run_id] = act.run_log(
            run_id=run_id,
            name=name,
            action_id=action_id,
            connection=connection,
            call=call.body,
            dispatch=call.dispatch,
            output=output,
            error=error,
            created=_iso(self.config.clock()),
        )
        return run_id

    async def get_run_log(self, request: Request) -> Response:
        found = self.run_logs.get(request.path_params["run_id"])
        if found is None:
            raise MembraneRefusal(404, "Action run log not found", key="not_found")
        return JSONResponse(found)

    async def list_run_logs(self, request: Request) -> Response:
        """Newest first, filtered as Membrane's `FindActionRunLogsQuery` filters, paged."""
        q = request.query_params
        params.choice(q, "status", ("success", "error"))
        logs = sorted(self.run_logs.values(), key=lambda log: log["createdAt"], reverse=True)
        wanted = {name: q[name] for name in _RUN_LOG_FILTERS if q.get(name)}
        if q.get("actionId"):
            wanted["integrationActionId"] = q["actionId"]
        found = [
            log
            for log in logs
            if all(log.get(name) == value for name, value in wanted.items())
            and (not q.get("from") or log["createdAt"] >= q["from"])
            and (not q.get("to") or log["createdAt"] <= q["to"])
        ]
        return JSONResponse(_page(found, q))

    # -- the proxy: Kartra's own API, as Kartra speaks it ---------------------------------------

    async def proxy(self, request: Request) -> Response:
        self.connection(request.path_params["selector"])
        path = request.path_params["path"] or "/"
        raw = await request.body()
        body: Any = raw.decode("utf-8", "replace")
        if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
        if request.url.query:
            path = f"{path}?{request.url.query}"
        status, payload = self._kartra_call(request.method, path, body, request.headers)
        return JSONResponse(payload, status_code=status)

    def _kartra_call(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> tuple[int, Any]:
        """Kartra's one endpoint, `POST /api`; anything else is answered as Kartra's web server would."""
        route, _, query = path.partition("?")
        if route not in _KARTRA_PATHS:
            return 404, {"status": "Error", "message": f"Not found: {route}. Kartra's API is POST / (or /api)"}
        if method != "POST":
            return 405, {"status": "Error", "message": "Kartra's API accepts POST only"}
        if isinstance(body, Mapping):
            form: Mapping[str, Any] = body
        elif isinstance(body, str):
            form = phpform.decode(body)
        else:
            return 200, {"status": "Error", "message": "'actions' not an array", "type": "224"}
        if query:
            form = {**phpform.decode_pairs(parse_qsl(query)), **form}
        response = self.kartra.handle(form)
        self.account.commit()
        return 200, response

    # -- admin -------------------------------------------------------------------------------

    async def admin_state(self, request: Request) -> Response:
        return JSONResponse(self.state())

    def state(self) -> dict[str, Any]:
        """Counts of every kind of record, plus sample records to drive demos and tests."""
        account = self.account
        counts = {
            "leads": len(account.leads),
            "tags": len(account.tags),
            "lists": len(account.lists),
            "sequences": len(account.sequences),
            "custom_fields": len(account.custom_fields),
            "pages": len(account.pages),
            "memberships": len(account.memberships),
            "products": len(account.products),
            "transactions": len(account.transactions),
            "subscriptions": len(account.subscriptions),
            "action_runs": len(self.run_logs),
        }
        return {"counts": counts, "samples": self._samples(), "connections": [c["id"] for c in self.connections]}

    def _samples(self) -> dict[str, Any]:
        account = self.account
        samples: dict[str, Any] = {}
        for tx in account.transactions.values():
            lead = account.leads[tx.lead_id]
            if (
                "refundable_transaction" not in samples
                and tx.type == "sale"
                and not tx.test
                and tx.subscription_id is None
                and account.refunded_amount(tx.id) == 0
            ):
                samples["refundable_transaction"] = {
                    "transaction_id": str(tx.id),
                    "amount": tx.amount,
                    "currency": tx.currency,
                    "lead_email": lead.email,
                }
                samples["lead_with_transactions"] = {"id": str(lead.id), "email": lead.email}
            if (
                "refunded_transaction" not in samples
                and tx.type in ("sale", "rebill")
                and account.refunded_amount(tx.id) >= tx.amount
            ):
                samples["refunded_transaction"] = {"transaction_id": str(tx.id), "lead_email": lead.email}
            if len(samples) >= 3:
                break
        for sub in account.subscriptions.values():
            key = {
                "Active": "active_subscription",
                "Cancelled": "cancelled_subscription",
                "Paused": "paused_subscription",
            }[sub.status]
            if key not in samples and not sub.paypal:
                first_tx = next(t for t in account.lead_transactions(sub.lead_id) if t.subscription_id == sub.id)
                samples[key] = {
                    "subscription_id": str(sub.id),
                    "transaction_id": str(first_tx.id),
                    "lead_email": account.leads[sub.lead_id].email,
                    "amount": sub.amount,
                    "currency": sub.currency,
                }
        for lead in account.leads.values():
            active = [(m, a) for m, a in lead.memberships.items() if a["active"]]
            if active and not lead.deleted:
                membership = account.memberships[active[0][0]]
                level = next(lv for lv in membership.levels if lv.id == active[0][1]["level_id"])
                samples["lead_with_membership"] = {
                    "id": str(lead.id),
                    "email": lead.email,
                    "membership_name": membership.name,
                    "level_name": level.name,
                }
                break
        plain = next((lead for lead in account.leads.values() if not lead.deleted), None)
        if plain is not None:
            samples["lead"] = {"id": str(plain.id), "email": plain.email}
        deleted = next((lead for lead in account.leads.values() if lead.deleted), None)
        if deleted is not None:
            samples["deleted_lead"] = {"id": str(deleted.id), "email": deleted.email}
        return samples

    async def admin_reset(self, request: Request) -> Response:
        body = await self._json(request) if await request.body() else {}
        seed, leads = body.get("seed", self.config.seed), body.get("leads", self.config.leads)
        if not (isinstance(seed, int) and isinstance(leads, int) and leads >= 0):
            raise MembraneRefusal(400, "seed must be an integer and leads an integer of at least 0")
        self.reset(seed=seed, leads=leads)
        return JSONResponse(self.state())

    def _startup_faults(self) -> list[FaultRule]:
        """Fresh copies of the configured faults, so their counts belong to this sandbox alone."""
        return [replace(rule, applied=0) for rule in self.config.faults]

    def reset(self, *, seed: int | None = None, leads: int | None = None) -> None:
        """Throw the account away and seed a fresh one; back to the configured faults, no runs, no requests."""
        self.config.seed = self.config.seed if seed is None else seed
        self.config.leads = self.config.leads if leads is None else leads
        self.store.clear()
        self.account = KartraAccount(self.store, self.config.clock)
        seed_account(self.account, seed=self.config.seed, leads=self.config.leads)
        self.kartra = KartraApi(self.account)
        self.connections = [self._connection(n) for n in range(self.config.connections)]
        self.connection_requests.clear()
        self.run_logs.clear()
        self.custom_actions.clear()
        self.requests.clear()
        self.faults.reset(self._startup_faults())

    async def admin_actions(self, request: Request) -> Response:
        """Add (POST one `custom_action` spec), list or remove (DELETE) the tenant's own actions."""
        if request.method == "POST":
            try:
                action = custom_action(await self._json(request))
            except ValueError as exc:
                raise MembraneRefusal(400, str(exc)) from None
            self.add_action(action)
        elif request.method == "DELETE":
            self.custom_actions.clear()
        return JSONResponse({"items": [self._action_json(a) for a in self.custom_actions.values()]})

    def add_action(self, action: ActionDef) -> None:
        """Add one of the tenant's own actions, as a person does in Membrane's console."""
        if action.key in BY_KEY:
            raise MembraneRefusal(409, f"Action {action.key!r} already exists", key="conflict")
        self.custom_actions[action.key] = action

    async def admin_faults(self, request: Request) -> Response:
        if request.method in ("PUT", "POST"):
            rules = parse_rules((await request.body()).decode() or "[]")
            self.faults.rules = rules if request.method == "PUT" else [*self.faults.rules, *rules]
        elif request.method == "DELETE":
            self.faults.reset()
        return JSONResponse({"faults": [r.to_json() for r in self.faults.rules]})

    async def admin_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.requests.clear()
        return JSONResponse({"requests": self.requests})

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise MembraneRefusal(400, "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise MembraneRefusal(400, "Request body must be a JSON object")
        return data

    def close(self) -> None:
        self.store.close()


async def _buffered(receive: Any) -> tuple[bytes, Any]:
    """Read a request's whole body, and a `receive` that hands it on as if unread."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def fingerprint(token: str) -> str:
    """A short, non-reversible label for a token, safe to print."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]
