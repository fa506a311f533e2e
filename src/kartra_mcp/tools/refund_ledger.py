"""Refunds this server has sent or is sending, per connection and transaction, so the policy's
per-transaction refund limit holds.

Kartra's own records say what was already refunded, but a refund this server just sent may not
show there yet, and two calls confirmed at once would both read the same figure. So every refund
under a limit takes a hold on its amount before it is sent: a hold that would take the transaction
past the limit is refused. A sent refund (or one whose outcome is unknown) keeps counting; one that
was not sent is released. The ledger is one small async interface, so a shared implementation
(Redis) can stand in for the in-process one when several processes serve one account.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from kartra_mcp.errors import ActionDenied, MembraneError
from kartra_mcp.tools.preview import RefundFacts, over_limit
from kartra_mcp.tools.results import kartra_failure

T = TypeVar("T")

# A hold whose refund never started (the call was refused right after it was taken) stops counting
# after this long; one that started is settled when its answer comes, or is lost.
UNSENT_HOLD_SECONDS = 900.0


@dataclass(frozen=True)
class RefundHold:
    """An amount reserved against a transaction's limit until its refund is settled."""

    connection: str
    transaction: str
    amount: float
    # What counted as refunded when the hold was taken, not counting other holds.
    base: float
    token: int = 0


class RefundLedger(Protocol):
    async def counted(self, connection: str, transaction: str, seen: float) -> float:
        """What counts as refunded: Kartra's figure `seen`, or more where this server sent or is sending refunds."""
        ...

    async def hold(
        self, connection: str, transaction: str, amount: float, *, seen: float, limit: float
    ) -> RefundHold | None:
        """Reserve `amount` when what counts as refunded plus it stays within `limit`; None when it would not."""
        ...

    async def settle(self, hold: RefundHold, *, sent: bool) -> None:
        """The refund was sent (or may have been): it keeps counting. It was not: the hold is released."""
        ...


@dataclass
class _Entry:
    # What is known to be refunded, counting this server's sent refunds that Kartra may not show yet.
    floor: float = 0.0
    held: dict[int, tuple[float, float]] = field(default_factory=dict)  # token -> (amount, taken at)


class MemoryRefundLedger:
    """The ledger of one process: every method runs without awaiting, so each is atomic on its event loop."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._tokens = itertools.count(1)
        self._clock = clock

    def _entry(self, connection: str, transaction: str) -> _Entry:
        entry = self._entries.setdefault((connection, transaction), _Entry())
        stale = self._clock() - UNSENT_HOLD_SECONDS
        for token in [t for t, (_, taken) in entry.held.items() if taken < stale]:
            del entry.held[token]
        return entry

    async def counted(self, connection: str, transaction: str, seen: float) -> float:
        entry = self._entry(connection, transaction)
        return round(max(seen, entry.floor) + sum(a for a, _ in entry.held.values()), 2)

    async def hold(
        self, connection: str, transaction: str, amount: float, *, seen: float, limit: float
    ) -> RefundHold | None:
        entry = self._entry(connection, transaction)
        base = max(seen, entry.floor)
        if round(base + sum(a for a, _ in entry.held.values()) + amount, 2) > limit:
            return None
        token = next(self._tokens)
        entry.held[token] = (amount, self._clock())
        return RefundHold(connection, transaction, amount, base, token)

    async def settle(self, hold: RefundHold, *, sent: bool) -> None:
        entry = self._entry(hold.connection, hold.transaction)
        entry.held.pop(hold.token, None)
        if sent:
            entry.floor = round(max(entry.floor, hold.base) + hold.amount, 2)


def settling(
    ledger: RefundLedger, hold: RefundHold, send: Callable[[], Awaitable[T]], done: Callable[[T], bool]
) -> Callable[[], Awaitable[T]]:
    """`send`, settling `hold` by what happened: `done` says whether an answer means the refund was made."""

    async def send_and_settle() -> T:
        sent = True  # a cancelled or lost call may have refunded: keep counting it
        try:
            result = await send()
            sent = done(result)
            return result
        except MembraneError as exc:
            sent = exc.may_have_executed
            raise
        finally:
            await ledger.settle(hold, sent=sent)

    return send_and_settle


async def hold_refund(ledger: RefundLedger, connection: str, facts: RefundFacts, limit: float) -> RefundHold:
    """Hold a checked refund's amount against its transaction's limit; `ActionDenied` when it would pass it.

    Refused here only when another refund of the same transaction was confirmed at the same time.
    """
    hold = await ledger.hold(connection, facts.transaction, facts.amount, seen=facts.seen, limit=limit)
    if hold is None:
        counted = await ledger.counted(connection, facts.transaction, facts.seen)
        raise ActionDenied(over_limit(replace(facts, counted=counted), limit), rule="cap")
    return hold


def refund_made(status: int | None, data: Any) -> bool:
    """Whether an answer to a refund means it may have been made: only a Kartra refusal or a 429 says it was not."""
    return status != 429 and kartra_failure(data) is None
