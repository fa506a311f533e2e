"""The policy's hourly cap of critical calls, as a reservation no concurrent call can overrun.

A critical call takes its place among the last hour's critical calls of its connection before its
intent row is written, and keeps it once the call may have been sent. Counting and taking are one
step: under a lock around the audit log's count (the default) that every process on the machine
sharing the log's file respects, or every replica sharing the log in PostgreSQL (its advisory lock);
across replicas with Redis as one atomic operation on the shared store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import anyio

from kartra_mcp.errors import StateUnavailable
from kartra_mcp.tools.audit import AuditLog, AuditTrail
from kartra_mcp.tools.file_lock import FileLock, FileLockTimeout
from kartra_mcp.tools.spec import Risk

WINDOW_SECONDS = 3600.0
# How long a capped call waits for another process's count and intent row before it is refused.
LOCK_TIMEOUT = 5.0


def cap_lock_path(audit_path: Path) -> Path:
    """The file whose lock the processes sharing the audit log at `audit_path` count and write under.

    Beside the file itself, past any link to it, as SQLite finds one database through the link: a
    process given the link and one given the file share the lock as they share the rows.
    """
    real = audit_path.resolve()
    return real.with_name(f"{real.name}.cap-lock")


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


class CapLock(Protocol):
    """A lock that every process counting in the same shared audit log respects."""

    def held(self) -> AbstractAsyncContextManager[None]:
        """Hold it while the block runs; raises `StateUnavailable` on entering (nothing held) when it cannot."""
        ...


@runtime_checkable
class LockedAudit(Protocol):
    """An audit log shared beyond this machine (PostgreSQL) that gives the lock its writers count under."""

    def cap_lock(self, timeout: float) -> CapLock:
        """The lock, waited for at most `timeout` seconds."""
        ...


class AuditCountedCap:
    """The audit log's count of the last hour, and the intent row, under one lock.

    Both wait for the audit log's worker, so without the lock concurrent calls could all count
    before any writes and overrun the cap. The rows outlive a restart, so the cap does too.
    An audit log in a file may be shared by other processes (Claude Desktop and Cursor each start
    one with the same default path), so there the lock is also a lock on a file beside it
    (`cap_lock_path`), and in PostgreSQL the log's own lock (`LockedAudit`), each waited for at most
    `lock_timeout` seconds.
    """

    def __init__(
        self, audit: AuditTrail, *, clock: Callable[[], float] = time.time, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        self._audit = audit
        self._clock = clock
        self._lock = anyio.Lock()
        path = audit.path if isinstance(audit, AuditLog) else None
        # In memory no other process can see the rows.
        self.across: FileLock | None = None if path is None else FileLock(cap_lock_path(path), timeout=lock_timeout)
        self.replicas: CapLock | None = audit.cap_lock(lock_timeout) if isinstance(audit, LockedAudit) else None

    async def used(self, connection: str) -> int:
        return await self._audit.count_since(
            self._clock() - WINDOW_SECONDS, risk=Risk.CRITICAL.value, connection=connection
        )

    @asynccontextmanager
    async def reserve(self, connection: str, limit: int) -> AsyncIterator[int | None]:
        async with self._lock, AsyncExitStack() as held:
            if self.across is not None:
                await self._hold(held, self.across)
            if self.replicas is not None:
                await held.enter_async_context(self.replicas.held())
            done = await self.used(connection)
            yield done if done >= limit else None

    @staticmethod
    async def _hold(stack: AsyncExitStack, lock: FileLock) -> None:
        """Take the other processes' lock for the rest of `stack`, or refuse the call: nothing is sent."""
        try:
            await stack.enter_async_context(lock.held())
        except FileLockTimeout:
            raise StateUnavailable(
                f"Another kartra-mcp process sharing this audit log held {lock.path} for over {lock.timeout:g} s, "
                "and the policy's hourly cap of critical calls cannot be checked without it, so nothing was sent. "
                "Try again in a moment; if it stays held, a stuck process holds it: close the other programs "
                "that run kartra-mcp with this audit log (Claude Desktop, Cursor, a terminal)."
            ) from None
        except OSError as exc:
            raise StateUnavailable(
                f"The lock file {lock.path}, which keeps the policy's hourly cap of critical calls across processes "
                f"sharing this audit log, cannot be used ({exc}), so nothing was sent. Make its directory writable "
                "by this user, or set KARTRA_MCP_AUDIT_DB to a file in a writable directory."
            ) from None
