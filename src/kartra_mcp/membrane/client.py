"""The one HTTP boundary to Membrane.

Every request goes through `_send`, which maps transport failures and Membrane's error bodies to
`kartra_mcp.errors` once, and retries only what is safe: reads (`retry_safe=True`) on timeouts,
resets, 429 and 5xx; any request whose connection never opened. A write whose answer is lost is
never sent again: the error says its outcome is unknown (`may_have_executed`). An answer too large
to read (`MembraneAnswerTooLarge`) is not asked again: it would be as large the next time.

Runs and raw requests go through `POST /act`, Membrane's published route; a deployment that does
not serve it (found once by a probe that cannot run anything, see `membrane.routes`) gets the
deprecated `POST /actions/{id}/run` and the connection proxy instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2
from pydantic import ValidationError

from kartra_mcp import __version__, progress
from kartra_mcp.errors import (
    MembraneAccessDenied,
    MembraneAnswerEncoded,
    MembraneAnswerTooLarge,
    MembraneApiError,
    MembraneBadRequest,
    MembraneError,
    MembraneNotAuthenticated,
    MembraneNotFound,
    MembraneProtocolError,
    MembraneRateLimited,
    MembraneRunFailed,
    MembraneServerError,
    MembraneTimeout,
    MembraneTransportError,
    MembraneUnreachable,
)
from kartra_mcp.jsoncodec import loads
from kartra_mcp.membrane.models import Action, ActionRun, Connection, ConnectionRequest, ProxyResponse
from kartra_mcp.membrane.retry import RetryPolicy
from kartra_mcp.membrane.routes import (
    ACT,
    ACT_SERVED,
    API_METHODS,
    PROBE_BODY,
    ROUTE_MISSING,
    RouteSupport,
    answer,
    api_request,
    upstream_answer,
)
from kartra_mcp.membrane.transport import (
    MAX_BODY,
    AnswerEncoded,
    AnswerTooLarge,
    MembraneTransport,
    bounding,
    network_transport,
    refuse_encoded,
)

_M = TypeVar("_M", Action, ActionRun, Connection, ConnectionRequest)

logger = logging.getLogger(__name__)

API_VERSION = "2025-10-21"
# Membrane stops any request at 60 s; a little more lets its own timeout answer first.
DEFAULT_TIMEOUT = 65.0
_PAGE_SIZE = 100
_MEMBRANE_ERROR_TYPES = frozenset(
    {
        "bad_request",
        "connection",
        "configuration",
        "dependency_error",
        "flow_run",
        "flow_instance_setup",
        "concurrency",
        "internal",
        "action_run",
        "action_instance_setup",
        "unit_run",
        "custom_code",
        "insufficient_credit",
        "openrouter_not_configured",
    }
)
_UPSTREAM_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _status_error(status: int) -> type[MembraneApiError]:
    if status == 401:
        return MembraneNotAuthenticated
    if status == 403:
        return MembraneAccessDenied
    if status == 404:
        return MembraneNotFound
    if status == 429:
        return MembraneRateLimited
    if status >= 500:
        return MembraneServerError
    return MembraneBadRequest


def _membrane_error_body(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("type") in _MEMBRANE_ERROR_TYPES and "message" in body:
        return body
    return None


def _api_error(response: httpx2.Response) -> MembraneApiError:
    body = _membrane_error_body(response) or {}
    data = body.get("data")
    run_id = body.get("actionRunId") or (data.get("actionRunId") if isinstance(data, dict) else None)
    message = str(body.get("message") or response.reason_phrase or "no error message")
    return _status_error(response.status_code)(
        response.status_code,
        message,
        type=str(body.get("type", "")),
        key=str(body.get("key") or ""),
        data=data,
        action_run_id=run_id,
    )


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class MembraneClient:
    """Async client for the parts of Membrane's API that reach Kartra.

    Args:
        base_url: Membrane's API, e.g. `https://api.getmembrane.com`.
        auth: credentials (`BearerToken` or `WorkspaceCredentials`).
        transport: where requests go; the default opens real connections (`membrane.transport`,
            or httpx2's own where the environment names a proxy), tests and `--sandbox` pass the
            sandbox's in-process transport.
        timeout: seconds one attempt may take, whatever the transport.
        retry: backoff for requests that are safe to send again.
        act: whether the deployment serves `POST /act`; None (the default) asks it once, before
            the first run, and remembers the answer.
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth: httpx2.Auth,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        act: bool | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        """`max_body` bounds an answer's body on any transport but `MembraneTransport`, which bounds its own."""
        self.base_url = base_url.rstrip("/")
        self._act = act
        self._route_lock = anyio.Lock()
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        if transport is None:
            transport = network_transport(timeout)
        # Our own transport bounds each attempt as a whole; any other is bounded here, by a cancel scope.
        self._keeps_time = isinstance(transport, MembraneTransport) and transport.attempt_timeout == timeout
        own_bounds = [] if isinstance(transport, MembraneTransport) else [bounding(max_body)]
        self._http = httpx2.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            transport=transport,
            timeout=httpx2.Timeout(timeout, connect=min(10.0, timeout)),
            headers={
                "membrane-api-version": API_VERSION,
                "user-agent": f"kartra-mcp/{__version__}",
                "accept": "application/json",
                # Every answer is read whole into memory under a bound on its bytes; a compressed one would
                # slip past it, so none is asked for, and one that comes anyway is refused (`refuse_encoded`).
                "accept-encoding": "identity",
            },
            event_hooks={"response": [refuse_encoded, *own_bounds]},
            trust_env=True,
        )
        # Merging the base URL and query costs more than the rest of building a request; action runs
        # reuse a few URLs, so each is built once.
        self._run_urls: dict[tuple[str, str], httpx2.URL] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- connections ----------------------------------------------------------------------

    async def list_connections(self, *, integration_key: str | None = None) -> list[Connection]:
        params = {"integrationKey": integration_key} if integration_key else {}
        return [Connection.model_validate(item) for item in await self._all_pages("/connections", params)]

    async def get_connection(self, connection_id: str) -> Connection:
        return Connection.model_validate(await self._get(f"/connections/{connection_id}"))

    async def create_connection_request(self, *, integration_key: str) -> ConnectionRequest:
        data = await self._json_call(
            "POST", "/connection-requests", json={"integrationKey": integration_key}, retry_safe=False
        )
        return self._parse(ConnectionRequest, data)

    async def get_connection_request(self, request_id: str) -> ConnectionRequest:
        return self._parse(ConnectionRequest, await self._get(f"/connection-requests/{request_id}"))

    # -- actions ----------------------------------------------------------------------------

    async def list_actions(self, *, connection_id: str, page_size: int = _PAGE_SIZE) -> list[Action]:
        items = await self._all_pages("/actions", {"connectionId": connection_id}, page_size=page_size)
        return [self._parse(Action, item) for item in items]

    async def search_actions(self, *, connection_id: str, intent: str, limit: int = 10) -> list[Action]:
        data = await self._get("/actions", {"connectionId": connection_id, "intent": intent[:200], "limit": limit})
        return [self._parse(Action, item) for item in self._items(data)]

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff this client uses, for callers that judge an answer it passed as sound."""
        return self._retry

    async def get_action(self, selector: str) -> Action:
        return self._parse(Action, await self._get(f"/actions/{selector}"))

    async def run_action(
        self, action_id: str, *, connection_id: str, input: Mapping[str, Any], retry_safe: bool
    ) -> ActionRun:
        """Run an action; `retry_safe` only for reads, so a write is never sent twice."""
        if await self.uses_act():
            data = await self._json_call(
                "POST",
                ACT,
                url=self._built_url(ACT),
                json={"id": action_id, "connectionId": connection_id, "input": dict(input)},
                retry_safe=retry_safe,
            )
        else:
            path = f"/actions/{action_id}/run"
            data = await self._json_call(
                "POST",
                path,
                url=self._built_url(path, connection_id),
                json={"input": dict(input)},
                retry_safe=retry_safe,
            )
        return self._parse(ActionRun, data)

    def _built_url(self, path: str, connection_id: str | None = None) -> httpx2.URL:
        """The absolute URL of `path` (with `connectionId` in its query when given), built once."""
        key = (path, connection_id or "")
        url = self._run_urls.get(key)
        if url is None:
            if len(self._run_urls) >= 1024:
                self._run_urls.clear()
            params = {"connectionId": connection_id} if connection_id else None
            url = self._run_urls[key] = self._http.build_request("POST", path, params=params).url
        return url

    # -- routes ---------------------------------------------------------------------------

    async def uses_act(self) -> bool:
        """Whether runs and raw requests go through `POST /act`: asked once, then remembered."""
        if self._act is None:
            async with self._route_lock:
                if self._act is None:
                    self._act = await self._probe_act()
        return self._act

    async def _probe_act(self) -> bool:
        """Ask `/act` with a body that names nothing to run; only a missing route means no."""
        try:
            await self._json_call("POST", ACT, json=PROBE_BODY, retry_safe=True)
        except MembraneApiError as exc:
            if exc.status_code in ROUTE_MISSING:
                logger.warning(
                    "Membrane at %s does not serve POST /act (HTTP %d); runs use the deprecated "
                    "POST /actions/{id}/run and raw requests the connection proxy",
                    self.base_url,
                    exc.status_code,
                )
                return False
            if exc.status_code in ACT_SERVED:
                return True
            raise
        return True

    async def route_support(self, connection_id: str) -> RouteSupport:
        """Which routes this deployment answers, asked without running anything (for `doctor`).

        The proxy is asked `GET /` on Kartra's side: Kartra's API takes commands only in a POST
        body, so a GET with neither body nor query runs nothing. Membrane's own 404 or 405 means
        the route is missing; any answer from Kartra's side means it is there.
        """
        act = await self.uses_act()
        try:
            await self._send("GET", f"/connections/{connection_id}/proxy/", retry_safe=True, upstream=True)
        except MembraneApiError as exc:
            if exc.status_code not in ROUTE_MISSING:
                raise
            missing = True
        else:
            missing = False
        return RouteSupport(act=act, proxy=not missing)

    # -- the proxy ------------------------------------------------------------------------

    async def proxy(
        self,
        connection_id: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        retry_safe: bool,
    ) -> ProxyResponse:
        """Send a request to Kartra through the connection; the answer is Kartra's, status and all.

        Through `/act` (`api`) where the deployment serves it, else through the connection proxy;
        a JSON body must be UTF-8 JSON and any other body UTF-8 text on the `/act` route.
        """
        if method in API_METHODS and await self.uses_act():
            return await self._act_api(
                connection_id, api_request(method, path, query=query, headers=headers, body=body), retry_safe
            )
        response, _ = await self._send(
            method,
            f"/connections/{connection_id}/proxy/{path.lstrip('/')}",
            params=dict(query or {}),
            content=body,
            headers=dict(headers or {}),
            retry_safe=retry_safe,
            upstream=True,
        )
        return ProxyResponse(response.status_code, dict(response.headers), response.content)

    async def _act_api(self, connection_id: str, api: Mapping[str, Any], retry_safe: bool) -> ProxyResponse:
        """A raw request through `/act`, answered as the proxy answers: the upstream's status and body."""
        try:
            data = await self._json_call(
                "POST", ACT, json={"connectionId": connection_id, "api": dict(api)}, retry_safe=retry_safe
            )
        except MembraneApiError as exc:
            upstream = upstream_answer(exc)
            if upstream is not None:
                return upstream
            if exc.action_run_id is not None and not isinstance(exc, MembraneRateLimited):
                # The run started and failed without saying what Kartra answered: fail closed.
                raise MembraneRunFailed(
                    exc.status_code,
                    exc.message,
                    type=exc.type,
                    key=exc.key,
                    data=exc.data,
                    action_run_id=exc.action_run_id,
                ) from None
            raise
        if not isinstance(data, dict) or ("output" not in data and "actionRunId" not in data):
            raise MembraneProtocolError(f"Membrane answered POST /act with {json.dumps(data)[:80]}, not a run")
        return answer(data.get("output"))

    # -- plumbing -------------------------------------------------------------------------

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._json_call("GET", path, params=params, retry_safe=True)

    async def _all_pages(self, path: str, params: Mapping[str, Any], *, page_size: int = _PAGE_SIZE) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = {**params, "limit": page_size, **({"cursor": cursor} if cursor else {})}
            data = await self._get(path, query)
            items.extend(self._items(data))
            await progress.report(f"{len(items)} listed from {path} so far")
            cursor = data.get("cursor") if isinstance(data, dict) else None
            if not cursor or cursor in seen:
                return items
            seen.add(cursor)

    @staticmethod
    def _items(data: Any) -> list[Any]:
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise MembraneProtocolError("Membrane answered a list request without an items array")
        return list(data["items"])

    @staticmethod
    def _parse(model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise MembraneProtocolError(
                f"Membrane's answer is not a valid {model.__name__}: {exc.errors()[0]['msg']}"
            ) from None

    async def _json_call(self, method: str, path: str, *, retry_safe: bool, **kwargs: Any) -> Any:
        _, data = await self._send(method, path, retry_safe=retry_safe, decode=True, **kwargs)
        return data

    async def _send(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool,
        decode: bool = False,
        upstream: bool = False,
        **kwargs: Any,
    ) -> tuple[httpx2.Response, Any]:
        """One logical request, sent at most `retry.attempts` times; errors mapped to our tree.

        With `upstream`, an error status without Membrane's error body is the upstream's own
        answer: it is retried like a Membrane error when safe, then returned rather than raised.
        """
        attempt = 0
        while True:
            attempt += 1
            response: httpx2.Response | None = None
            data: Any = None
            try:
                response = await self._attempt(method, path, **kwargs)
                error, data = self._check(response, decode=decode, upstream=upstream)
            except MembraneError as exc:
                error = exc
            if error is None and response is not None:
                return response, data
            assert error is not None
            may_resend = isinstance(error, MembraneUnreachable) or (retry_safe and error.retryable)
            if not may_resend or attempt >= self._retry.attempts:
                if (
                    upstream
                    and response is not None
                    and _membrane_error_body(response) is None
                    and response.status_code >= 400
                ):
                    return response, None
                raise error
            delay = self._retry.delay(attempt, _retry_after(response))
            logger.warning(
                "Membrane %s %s failed (%s); attempt %d of %d in %.2fs",
                method,
                path,
                type(error).__name__,
                attempt + 1,
                self._retry.attempts,
                delay,
            )
            await progress.report(
                f"Membrane answered {type(error).__name__}; trying again in {delay:.1f}s "
                f"(attempt {attempt + 1} of {self._retry.attempts})"
            )
            await self._retry.sleep(delay)

    async def _attempt(
        self, method: str, path: str, *, url: httpx2.URL | None = None, **kwargs: Any
    ) -> httpx2.Response:
        """One request to `path` (or, when given, its already built absolute `url`)."""
        try:
            if self._keeps_time:
                return await self._http.request(method, path if url is None else url, **kwargs)
            with anyio.fail_after(self._timeout):
                return await self._http.request(method, path if url is None else url, **kwargs)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise MembraneUnreachable(f"Could not reach Membrane at {self.base_url}: {type(exc).__name__}") from None
        except (TimeoutError, httpx2.TimeoutException):
            raise MembraneTimeout(f"Membrane did not answer {method} {path} within {self._timeout:g}s") from None
        except AnswerEncoded as exc:
            raise MembraneAnswerEncoded(f"{exc}; the answer to {method} {path} was not read") from None
        except AnswerTooLarge as exc:
            raise MembraneAnswerTooLarge(f"{exc}; the answer to {method} {path} was not read") from None
        except httpx2.TransportError as exc:
            raise MembraneTransportError(
                f"The connection to Membrane broke during {method} {path}: {type(exc).__name__}"
            ) from None

    @staticmethod
    def _check(response: httpx2.Response, *, decode: bool, upstream: bool) -> tuple[MembraneError | None, Any]:
        """The error an answer amounts to (or None) and, when asked, its decoded JSON."""
        if response.status_code >= 400:
            if upstream and _membrane_error_body(response) is None:
                if response.status_code in _UPSTREAM_RETRY_STATUSES:
                    return _status_error(response.status_code)(response.status_code, "upstream error"), None
                return None, None
            return _api_error(response), None
        if not decode:
            return None, None
        try:
            return None, loads(response.content)
        except ValueError:
            return MembraneProtocolError(
                f"Membrane answered {response.request.method} {response.request.url.path} with a body that is not JSON"
            ), None
