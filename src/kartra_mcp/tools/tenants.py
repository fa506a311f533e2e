"""Hosted for a team: who a Membrane token belongs to, and each tenant's own call pipeline.

`TenantDirectory` answers "whose token is this?" by asking Membrane (one `GET /connections`),
and remembers the answer briefly under the token's SHA-256, never the token itself. A token
Membrane refuses belongs to no one. `TenantRuntimes` keeps, per tenant, the resolved Kartra
connection, its catalog and an `Executor` whose confirmations and audit rows are that tenant's
alone; both are bounded LRU maps with a TTL, so memory stays bounded whatever the number of
people. Every Membrane request made for a person runs inside `person_token`, so it carries
their token and no one else's.

State shared by replicas slots in behind these seams, each keyed by tenant: the `ConfirmationBook`,
the `RefundLedger` and the `CriticalCap` each tenant's executor is given (`state_for`; Redis:
`kartra_mcp.state`), and the audit log view each tenant writes and counts caps in (`for_tenant`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import anyio
import jwt

from kartra_mcp.errors import MembraneAccessDenied, MembraneNotAuthenticated
from kartra_mcp.membrane import Connection, MembraneClient, person_token
from kartra_mcp.tools.audit import AuditTrail
from kartra_mcp.tools.catalog import Catalog
from kartra_mcp.tools.confirm import ConfirmationBook
from kartra_mcp.tools.connection import INTEGRATION_KEY, resolve_connection
from kartra_mcp.tools.critical_cap import CriticalCap
from kartra_mcp.tools.executor import BUILTIN_NAMES, Executor
from kartra_mcp.tools.policy import Policy
from kartra_mcp.tools.refund_ledger import MemoryRefundLedger, RefundLedger

logger = logging.getLogger(__name__)

_V = TypeVar("_V")

TOKEN_TTL = 30.0
TOKEN_ENTRIES = 10_000
TENANT_TTL = 900.0
TENANT_ENTRIES = 256


class TtlCache(Generic[_V]):
    """A map that forgets entries `ttl` seconds after they were put, and its least recently used past `size`."""

    def __init__(self, *, ttl: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, _V]] = OrderedDict()

    def get(self, key: str) -> _V | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: str, value: _V, *, ttl: float | None = None) -> None:
        """Keep `value` for `ttl` seconds (at most the cache's own)."""
        self._items[key] = (self._clock() + min(self.ttl, self.ttl if ttl is None else ttl), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def token_digest(token: str) -> str:
    """What a token is remembered by: its SHA-256, from which the token cannot be recovered."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TenantState:
    """What a tenant's executor is given that must outlive it: pending confirmations, refunds on hold."""

    book: ConfirmationBook
    refunds: RefundLedger
    # None: counted from the tenant's audit rows under the audit log's lock (see `AuditCountedCap`).
    critical_cap: CriticalCap | None = None


@dataclass(frozen=True)
class Tenant:
    """The Membrane tenant a token acts for; `key` is Membrane's tenant id."""

    key: str
    connections: tuple[Connection, ...] = ()


class TenantDirectory:
    """Whose token is this: asked of Membrane, remembered for `ttl` seconds by the token's digest.

    A revoked token keeps working here for at most `ttl` seconds; Membrane itself refuses it
    at once for the calls that reach it.
    """

    def __init__(
        self,
        client: MembraneClient,
        *,
        ttl: float = TOKEN_TTL,
        size: int = TOKEN_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._known: TtlCache[Tenant] = TtlCache(ttl=ttl, size=size, clock=clock)
        self.lookups = 0

    async def identify(self, token: str) -> Tenant | None:
        """The tenant `token` belongs to, or None when Membrane refuses it (expired, revoked, forged).

        Raises:
            MembraneError: Membrane could not answer (down, 5xx): no one is let in on a guess.
        """
        digest = token_digest(token)
        known = self._known.get(digest)
        if known is not None:
            return known
        self.lookups += 1
        try:
            with person_token(token):
                connections = await self._client.list_connections(integration_key=INTEGRATION_KEY)
        except (MembraneNotAuthenticated, MembraneAccessDenied):
            return None
        owners = sorted({c.tenant_id for c in connections if c.tenant_id})
        if len(owners) > 1:
            logger.warning("a token sees connections of %d tenants; refusing it", len(owners))
            return None
        # A token that sees no connection yet still belongs to someone; its digest keeps it apart.
        tenant = Tenant(owners[0] if owners else f"unconnected-{digest[:32]}", tuple(connections))
        self._known.put(digest, tenant, ttl=_seconds_left(token))
        return tenant


def _seconds_left(token: str) -> float | None:
    """Until a JWT's `exp`, so an expired token is not let in from memory; None for other tokens.

    The signature is not checked: Membrane checked it, and `exp` can only shorten the stay here.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) - time.time() if isinstance(exp, int | float) else None


ToolMode = Literal["actions", "search"]


class TenantRuntimes:
    """Each tenant's executor: its own connection, catalog, confirmations and audit rows.

    Opened on a tenant's first call (inside `person_token`, so with their token) and kept for
    `ttl` seconds, at most `size` tenants. A tenant's `TenantState` (confirmation book, refund
    ledger) outlives the reopening of its executor after the TTL; only LRU eviction of an idle
    tenant forgets its pending ids, which then simply run nothing. `state_for` replaces the
    in-process state with a shared one (it must key everything by the tenant it is given).
    """

    def __init__(
        self,
        client: MembraneClient,
        *,
        policy: Policy,
        audit: AuditTrail,
        tool_mode: ToolMode = "actions",
        ttl: float = TENANT_TTL,
        size: int = TENANT_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        state_for: Callable[[str], TenantState] | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._audit = audit
        self._tool_mode: ToolMode = tool_mode
        self._executors: TtlCache[Executor] = TtlCache(ttl=ttl, size=size, clock=clock)
        self._states: TtlCache[TenantState] = TtlCache(ttl=float("inf"), size=size, clock=clock)
        self._state_for = state_for or self._local_state
        self._opening: dict[str, anyio.Lock] = {}
        self.opened = 0

    def _local_state(self, tenant: str) -> TenantState:
        state = self._states.get(tenant)
        if state is None:
            book = ConfirmationBook(secrets.token_bytes(32), ttl=self._policy.confirmation_ttl)
            state = TenantState(book, MemoryRefundLedger())
            self._states.put(tenant, state)
        return state

    def peek(self, tenant: str) -> Executor | None:
        """The tenant's executor if it is open, without opening it."""
        return self._executors.get(tenant)

    async def get(self, tenant: str) -> Executor:
        """The tenant's executor, opened with the current person's token when it is not open.

        Raises:
            ConfigError: the tenant has no usable Kartra connection (the message says what to do).
            MembraneError: Membrane could not list the connection's actions.
        """
        found = self._executors.get(tenant)
        if found is not None:
            return found
        lock = self._opening.setdefault(tenant, anyio.Lock())
        try:
            async with lock:
                found = self._executors.get(tenant)
                if found is None:
                    found = await self._open(tenant)
                    self._executors.put(tenant, found)
        finally:
            if not lock.statistics().tasks_waiting:
                self._opening.pop(tenant, None)
        return found

    async def _open(self, tenant: str) -> Executor:
        connection = await resolve_connection(self._client, None)
        # No disk cache: each tenant's catalog is fetched when opened, and again after the TTL.
        catalog = Catalog(self._client, connection.id, cache_dir=None, reserved=BUILTIN_NAMES)
        await catalog.start()
        self.opened += 1
        logger.info("tenant %s: Kartra connection %s, %d actions", tenant, connection.id, len(catalog.specs))
        state = self._state_for(tenant)
        return Executor(
            client=self._client,
            catalog=catalog,
            policy=self._policy,
            book=state.book,
            refunds=state.refunds,
            critical_cap=state.critical_cap,
            audit=self._audit.for_tenant(tenant),
            tool_mode=self._tool_mode,
        )

    def __len__(self) -> int:
        return len(self._executors)
