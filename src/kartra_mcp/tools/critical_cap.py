"""The policy's hourly cap of critical calls, as a reservation no concurrent call can overrun.

A critical call takes its place among the last hour's critical calls of its connection before its
intent row is written, and keeps it once the call may have been sent. Counting and taking are one
step: in one process under a lock around the audit log's count (the default), across replicas as
one atomic operation on the shared store (Redis).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import anyio

from kartra_mcp.tools.audit import AuditTrail
from kartra_mcp.tools.spec import Risk

WINDOW_SECONDS = 3600.0


class CriticalCap(Protocol):
    async def used(self, connection: str) -> int:
        """How many critical calls of `connection` ran (or may have) in the last hour: a check before asking."""
        ...

    def reserve(self, connection: str, limit: int) -> AbstractAsyncContextManager[int | None]:
        """Hold a place for one critical call of `connection` while the block runs.

        Entering gives None when a place is held, or how many ran in the last hour when `limit` is
        reached (nothing held: refuse the call). A held place is kept when the block ends normally
        (the call was recorded, so it counts) and given back when the block raises (nothing was sent).
        May raise `StateUnavailable` on entering: then nothing may be sent.
        """
        ...


class AuditCountedCap:
    """One process: the audit log's count of the last hour, and the intent row, under one lock.

    Both wait for the audit log's worker, so without the lock concurrent calls could all count
    before any writes and overrun the cap. The rows outlive a restart, so the cap does too.
    """

    def __init__(self, audit: AuditTrail, *, clock: Callable[[], float] = time.time) -> None:
        self._audit = audit
        self._clock = clock
        self._lock = anyio.Lock()

    async def used(self, connection: str) -> int:
        return await self._audit.count_since(
            self._clock() - WINDOW_SECONDS, risk=Risk.CRITICAL.value, connection=connection
        )

    @asynccontextmanager
    async def reserve(self, connection: str, limit: int) -> AsyncIterator[int | None]:
        async with self._lock:
            done = await self.used(connection)
            yield done if done >= limit else None
