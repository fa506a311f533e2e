"""Confirmation ids: what a person's yes is bound to, and how it is spent.

An id is `<nonce>.<mac>`: the MAC (HMAC-SHA256 under a per-process secret) covers the nonce, the
channel, the tool, a digest of the canonical arguments, the connection and the expiry, which the
server keeps beside the nonce. So an id runs exactly the call it was issued for, on the connection
it was issued for, once, before it expires, and only through its channel: a `token` id through
the confirm-action tool, an `elicitation` id echoed back by a client whose person said yes. A
forged, damaged, expired, spent, unknown or declined id runs nothing.

Where the pending calls live is a `PendingStore`: this process's memory by default, or a store
that several replicas share (Redis), whose `take` is atomic, so an id raced on two replicas runs
once. The store also holds the secret, so every replica signs and checks ids alike.

Each pending call holds its arguments until it expires, so a connection may have at most
`PENDING_LIMIT` waiting at once (a tenant's store in hosted mode is its own, so the bound is per
tenant too); past it a new call is refused (`TooManyPending`) and nothing is kept or sent.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kartra_mcp.errors import ConfirmationInvalid, TooManyPending

Channel = Literal["token", "elicitation"]

# Calls one connection may have waiting for a person at once (confirmation ids, and approvals apart).
PENDING_LIMIT = 50


def too_many_pending(limit: int, ttl: float) -> TooManyPending:
    """The refusal of a call past the bound: what happened, and what the person can do."""
    return TooManyPending(
        f"{limit} calls on this connection are already waiting for a person's answer, so this one was not "
        f"asked and nothing was sent. Have the person answer or decline the waiting ones, or let them expire "
        f"(within {round(ttl / 60) or 1} min), then call again."
    )


def canonical(arguments: Mapping[str, Any]) -> str:
    """The one text of a set of arguments: sorted keys, no spaces."""
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class PendingCall:
    """A call waiting for a person's yes."""

    nonce: str
    tool: str
    arguments: Mapping[str, Any]
    connection: str
    expires_at: float
    channel: Channel = "token"

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical(self.arguments).encode()).hexdigest()


class PendingStore(Protocol):
    """Where pending calls wait, and which ids are spent; every method may raise `StateUnavailable`."""

    async def secret(self) -> bytes:
        """The key that signs ids: the same for every process sharing this store."""
        ...

    async def put(self, call: PendingCall, limit: int) -> bool:
        """Keep `call` until it expires, unless its connection has `limit` unexpired ones: then False, nothing kept."""
        ...

    async def get(self, nonce: str) -> PendingCall | None:
        """The pending call of `nonce`; None when unknown, spent or forgotten."""
        ...

    async def was_spent(self, nonce: str) -> bool:
        """Whether `nonce` was spent (until its expiry)."""
        ...

    async def take(self, call: PendingCall, until: float) -> bool:
        """Atomically remove the pending call and mark it spent until `until`: True for exactly one caller."""
        ...


class MemoryPendingStore:
    """The pending calls of one process; every method runs without awaiting, so each is atomic on its loop."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock
        self._pending: dict[str, PendingCall] = {}
        self._spent: dict[str, float] = {}

    async def secret(self) -> bytes:
        return self._secret

    async def put(self, call: PendingCall, limit: int) -> bool:
        self._forget_expired()
        now = self._clock()
        if sum(1 for c in self._pending.values() if c.connection == call.connection and c.expires_at >= now) >= limit:
            return False
        self._pending[call.nonce] = call
        return True

    async def get(self, nonce: str) -> PendingCall | None:
        return self._pending.get(nonce)

    async def was_spent(self, nonce: str) -> bool:
        return nonce in self._spent

    async def take(self, call: PendingCall, until: float) -> bool:
        if self._pending.pop(call.nonce, None) is None:
            return False
        self._spent[call.nonce] = until
        return True

    def _forget_expired(self) -> None:
        now = self._clock()
        for nonce in [n for n, c in self._pending.items() if c.expires_at < now]:
            del self._pending[nonce]
        for nonce in [n for n, t in self._spent.items() if t < now]:
            del self._spent[nonce]


_SPENT = "This confirmation id was already used or declined; nothing was run. Each id works once."


class ConfirmationBook:
    """Issues confirmation ids, keeps the calls they stand for in its store, and redeems each at most once.

    Without a `store`, the calls wait in this process under `secret` (a new random one by default).
    A connection has at most `limit` ids pending at once.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
        store: PendingStore | None = None,
        limit: int = PENDING_LIMIT,
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self._clock = clock
        self.store: PendingStore = store or MemoryPendingStore(secret or secrets.token_bytes(32), clock=clock)

    async def issue(
        self, tool: str, arguments: Mapping[str, Any], connection: str, *, channel: Channel = "token"
    ) -> tuple[str, float]:
        """A new id for this exact call through this channel, and when it expires (epoch seconds).

        Raises `TooManyPending` when the connection already has `limit` ids pending: nothing is kept.
        """
        nonce = secrets.token_hex(12)
        call = PendingCall(nonce, tool, copy.deepcopy(dict(arguments)), connection, self._clock() + self.ttl, channel)
        mac = await self._mac(call)
        if not await self.store.put(call, self.limit):
            raise too_many_pending(self.limit, self.ttl)
        return f"{nonce}.{mac}", call.expires_at

    async def redeem(self, confirmation_id: str, connection: str) -> PendingCall:
        """Spend a `token` id and return the call it confirms (for the confirm-action tool)."""
        call = await self._verify(confirmation_id, connection, "token")
        await self._spend(call)
        return call

    async def redeem_for(self, confirmation_id: str, tool: str, arguments: Mapping[str, Any], connection: str) -> None:
        """Spend an `elicitation` id echoed back with a retried call; it must be for this very call."""
        call = await self._verify(confirmation_id, connection, "elicitation")
        if call.tool != tool or call.digest != PendingCall("", tool, arguments, connection, 0).digest:
            raise ConfirmationInvalid(
                "This confirmation was given for a different call; nothing was run. Call the "
                "tool again to get a new confirmation."
            )
        await self._spend(call)

    async def discard(self, confirmation_id: str) -> None:
        """Spend an id without running anything: the person said no, or it was replaced."""
        nonce = confirmation_id.strip().partition(".")[0]
        call = await self.store.get(nonce)
        if call is not None:
            await self.store.take(call, call.expires_at)

    async def _verify(self, confirmation_id: str, connection: str, channel: Channel) -> PendingCall:
        nonce, _, mac = confirmation_id.strip().partition(".")
        call = await self.store.get(nonce)
        # Asked after the read: an id spent elsewhere in between is gone from pending and marked spent.
        if call is None and await self.store.was_spent(nonce):
            raise ConfirmationInvalid(_SPENT)
        if call is None or not mac:
            raise ConfirmationInvalid(
                "Unknown confirmation id; nothing was run. It may be mistyped, or the server "
                "restarted: call the tool again to get a new preview and id."
            )
        if (
            not hmac.compare_digest(mac, await self._mac(call))
            or call.connection != connection
            or call.channel != channel
        ):
            raise ConfirmationInvalid(
                "This confirmation id is not valid (it was altered, forged, or issued for the "
                "person to answer in their client); nothing was run."
            )
        if self._clock() > call.expires_at:
            raise ConfirmationInvalid(
                "This confirmation id has expired; nothing was run. Call the tool again and ask the person again."
            )
        return call

    async def _spend(self, call: PendingCall) -> None:
        # Another process (or task) may have spent it since it was checked: only one take succeeds.
        if not await self.store.take(call, call.expires_at):
            raise ConfirmationInvalid(_SPENT)

    async def _mac(self, call: PendingCall) -> str:
        fields = (call.nonce, call.channel, call.tool, call.digest, call.connection, f"{call.expires_at:.3f}")
        message = "\x1f".join(fields)
        return hmac.new(await self.store.secret(), message.encode(), hashlib.sha256).hexdigest()[:32]
