"""Faults the sandbox can inject, for testing what is built on it.

A rule matches requests by method and path glob and can add latency, answer with an error status
(some of the time, or the next N times: a burst of 429s), hang past the client's timeout, or answer
with a malformed body, one padded past what a client reads (`pad_bytes`), or one compressed unasked
(`compressed`, as a proxy might). With `after`, the request is carried out first and then its answer is lost
(hang), replaced (status) or spoiled (malformed, padded and compressed are always after): the write happened, the client
cannot know. With `upstream`, an error status comes with the upstream's kind of body rather than
Membrane's, as when Kartra's side of the proxy fails (on `/act`, as Membrane reports a raw request
whose upstream failed: its error body with the upstream's status and body under `data.response`).
An `/act` request also matches by what it runs, `/act/action/<action id>` or `/act/api`, so a
rule can fault one action on either route. Randomness comes from one seeded generator, so a
run with the same seed and the same requests injects the same faults.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kartra_mcp.errors import MembraneRefusal
from kartra_mcp.sandbox.act import upstream_failure

ADMIN_PREFIX = "/_sandbox/"
# The scope key under which the sandbox puts what an `/act` request runs, as a path.
ROUTE_ALIAS = "kartra_sandbox.route_alias"

_STATUS_KEYS: dict[int, tuple[str, str | None, str]] = {
    400: ("bad_request", None, "Injected bad request"),
    401: ("bad_request", "not_authenticated", "Injected authentication failure"),
    403: ("bad_request", "access_denied", "Injected access denial"),
    404: ("bad_request", "not_found", "Injected not found"),
    429: ("bad_request", "rate_limit_exceeded", "Rate limit exceeded (injected)"),
}

# What each setting of a rule must be in JSON; anything else is refused when the rule is set, not
# when a request meets it.
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "route": (str,),
    "latency_ms": (int, float),
    "status": (int, type(None)),
    "rate": (int, float),
    "times": (int, type(None)),
    "hang_seconds": (int, float),
    "after": (bool,),
    "upstream": (bool,),
    "malformed": (bool,),
    "pad_bytes": (int,),
    "compressed": (bool,),
}


@dataclass
class FaultRule:
    """One fault. `route` is `"METHOD /glob"` or `"/glob"` (any method); `*` matches any characters."""

    route: str = "*"
    latency_ms: float = 0.0
    status: int | None = None
    rate: float = 1.0
    times: int | None = None
    hang_seconds: float = 0.0
    after: bool = False
    upstream: bool = False
    malformed: bool = False
    # The answer as it was, with this many spaces after it: still JSON, but larger.
    pad_bytes: int = 0
    # The answer as it was, gzip-compressed under `content-encoding: gzip` whatever the client asked for.
    compressed: bool = False
    applied: int = field(default=0, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, Mapping):
            raise MembraneRefusal(400, "A fault rule must be a JSON object")
        known = {f.name for f in fields(cls)} - {"applied"}
        unknown = set(data) - known
        if unknown:
            raise MembraneRefusal(
                400, f"Unknown fault setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        for name, value in data.items():
            wanted = _SETTING_TYPES[name]
            # JSON's true and false are Python ints too: only the two flags take them.
            if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
                raise MembraneRefusal(400, f"Invalid fault rule: {name} cannot be {value!r}")
        rule = cls(**dict(data))
        if not 0.0 <= rule.rate <= 1.0:
            raise MembraneRefusal(400, "rate must be between 0 and 1")
        if rule.status is not None and not 400 <= rule.status <= 599:
            raise MembraneRefusal(400, "status must be an HTTP error status (400-599)")
        if rule.pad_bytes < 0:
            raise MembraneRefusal(400, "pad_bytes cannot be negative")
        return rule

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, path: str, alias: str | None = None) -> bool:
        wanted_method, _, pattern = self.route.partition(" ") if " " in self.route else ("*", "", self.route)
        return (wanted_method in ("*", method)) and any(
            fnmatch.fnmatchcase(p, pattern) for p in (path, alias) if p is not None
        )

    @property
    def spoils(self) -> bool:
        """Whether the answer is carried out and then spoiled (never sent as it came)."""
        return self.malformed or self.pad_bytes > 0 or self.compressed

    @property
    def spent(self) -> bool:
        return self.times is not None and self.applied >= self.times


def parse_rules(raw: str | Iterable[Mapping[str, Any]]) -> list[FaultRule]:
    """Rules from JSON text (a list or one object) or already-parsed mappings."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise MembraneRefusal(400, "Fault rules must be JSON: one rule object or a list of them")
    return [FaultRule.from_json(item) for item in data]


class FaultInjector:
    """ASGI middleware that applies the first matching rule to each non-admin request."""

    def __init__(self, app: ASGIApp, *, seed: int = 0, rules: Iterable[FaultRule] = ()) -> None:
        self.app = app
        self.rules: list[FaultRule] = list(rules)
        self._rng = random.Random(seed)
        self._seed = seed

    def reset(self, rules: Iterable[FaultRule] = ()) -> None:
        self.rules = list(rules)
        self._rng = random.Random(self._seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        alias = scope.get(ROUTE_ALIAS)
        rule = next((r for r in self.rules if not r.spent and r.matches(scope["method"], scope["path"], alias)), None)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.latency_ms:
            await anyio.sleep(rule.latency_ms / 1000)
        if rule.rate < 1.0 and self._rng.random() >= rule.rate:
            await self.app(scope, receive, send)
            return
        rule.applied += 1
        if not rule.after:
            if rule.hang_seconds:
                await anyio.sleep(rule.hang_seconds)
            if rule.status is not None:
                await self._error(rule.status, send, upstream=rule.upstream, act=alias is not None)
                return
            if not rule.spoils:
                await self.app(scope, receive, send)
                return
        # Carry the request out, then lose, replace or spoil its answer.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if rule.hang_seconds:
            await anyio.sleep(rule.hang_seconds)
        if rule.status is not None:
            # Membrane's error for a run that happened still names the run.
            run_id = _run_id(held) if alias is not None else None
            await self._error(rule.status, send, upstream=rule.upstream, act=alias is not None, run_id=run_id)
        elif rule.malformed:
            await self._send(send, 200, b'{"output": {"status": "Succ')
        elif rule.spoils:
            await self._reshaped(held, send, pad=rule.pad_bytes, compressed=rule.compressed)
        else:
            for message in held:
                await send(message)

    @staticmethod
    async def _error(status: int, send: Send, *, upstream: bool, act: bool = False, run_id: str | None = None) -> None:
        body: Mapping[str, Any]
        if upstream and act:
            upstream_body = {"status": "Error", "message": f"Upstream failure {status} (injected)"}
            body = upstream_failure(status, upstream_body, run_id).body()
        elif upstream:
            body = {"status": "Error", "message": f"Upstream failure {status} (injected)"}
        else:
            kind, key, message = _STATUS_KEYS.get(status, ("internal", None, "Injected server error"))
            data = {"actionRunId": run_id} if run_id else None
            body = dict(MembraneRefusal(status, message, type=kind, key=key, data=data).body())
        await FaultInjector._send(send, status, json.dumps(body).encode())

    @staticmethod
    async def _reshaped(held: list[Message], send: Send, *, pad: int, compressed: bool) -> None:
        """A held answer sent again padded with `pad` spaces and, if `compressed`, gzip-compressed."""
        start = next(m for m in held if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body") + b" " * pad
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-encoding")]
        if compressed:
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _send(send: Send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _run_id(held: list[Message]) -> str | None:
    """The `actionRunId` of a held answer, if it names one."""
    raw = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    found = data.get("actionRunId") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None
