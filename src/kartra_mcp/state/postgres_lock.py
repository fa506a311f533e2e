"""A PostgreSQL advisory lock that replicas sharing one audit log hold from the cap's count to the intent row.

A session lock on a connection of its own, opened for each hold and closed after, so no state
outlives it: the database drops the lock when its connection ends, however it ends. It is taken by
`pg_try_advisory_lock` attempts with a short sleep between, so the event loop never waits on another
replica, and a wait that is cancelled or gives up holds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg

from kartra_mcp.errors import StateUnavailable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5
# What a person does when the database does not answer: said by the audit log and by this lock.
DSN_FIX = "check that PostgreSQL is running and KARTRA_MCP_AUDIT_DSN reaches it (host, port, database, user)"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (Python's `hash` changes between processes; this must not)."""
    digest = hashlib.sha256(f"kartra-mcp critical cap: {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """The advisory lock `key` in the database at `dsn`, given up after `timeout` seconds of waiting.

    `what` names it in messages (the table whose count it guards).
    """

    def __init__(self, dsn: str, key: int, *, what: str, timeout: float, interval: float = 0.01) -> None:
        self._dsn = dsn
        self.key = key
        self.what = what
        self.timeout = timeout
        self._interval = interval

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lock while the block runs.

        Raises `StateUnavailable` on entering (nothing held) when another session kept it for `timeout`
        seconds, or the database cannot be reached or did not answer within `timeout` seconds.
        """
        db: psycopg.AsyncConnection[Any] | None = None
        taken = busy = False
        try:
            with anyio.move_on_after(self.timeout):
                db = await self._connect()
                while not await self._try(db):
                    if not busy:
                        logger.info("%s is held by another replica; waiting up to %g s", self._name, self.timeout)
                        busy = True
                    await anyio.sleep(self._interval)
                taken = True
            if not taken:
                raise self._refusal(busy=busy)  # the wait ran out
            yield
        finally:
            if db is not None:
                with anyio.CancelScope(shield=True):
                    await self._release(db, taken=taken)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None

    async def _try(self, db: psycopg.AsyncConnection[Any]) -> bool:
        try:
            cursor = await db.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            found = await cursor.fetchone()
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None
        return bool(found and found[0])

    async def _release(self, db: psycopg.AsyncConnection[Any], *, taken: bool) -> None:
        """Unlock when surely held, then close: ending the session drops the lock too, so on any doubt
        (a cancel during an attempt, a failed unlock) the close alone releases it."""
        try:
            if taken:
                with anyio.move_on_after(CONNECT_TIMEOUT):
                    cursor = await db.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                    found = await cursor.fetchone()
                    if not (found and found[0]):
                        logger.warning("%s was not held at its release", self._name)
        except psycopg.Error as exc:
            logger.warning("releasing %s: %s; closing its connection instead", self._name, exc)
        finally:
            try:
                await db.close()
            except psycopg.Error as exc:
                logger.debug("closing the connection of %s: %s", self._name, exc)

    @property
    def _name(self) -> str:
        return f"the PostgreSQL advisory lock {self.key} on the critical calls in {self.what}"

    def _refusal(self, *, busy: bool) -> StateUnavailable:
        if not busy:
            return StateUnavailable(
                f"The audit log's PostgreSQL, which keeps the policy's hourly cap of critical calls across "
                f"replicas, did not answer within {self.timeout:g} s, so nothing was sent. A person must fix it: "
                f"{DSN_FIX}."
            )
        return StateUnavailable(
            f"Another kartra-mcp replica sharing this audit log held {self._name} for over {self.timeout:g} s, "
            "and the policy's hourly cap of critical calls cannot be checked without it, so nothing was sent. "
            "Try again in a moment; if it stays held, a stuck session holds it: find its pid in pg_locks "
            "(locktype 'advisory', objsubid 1) and end it with pg_terminate_backend(pid), or restart that replica."
        )

    def _unreachable(self, exc: psycopg.Error) -> StateUnavailable:
        logger.error("the advisory lock of %s cannot be used: %s", self.what, exc)
        return StateUnavailable(
            f"The audit log's PostgreSQL, which keeps the policy's hourly cap of critical calls across replicas, "
            f"cannot be used ({type(exc).__name__}: {exc}), so nothing was sent. A person must fix it: {DSN_FIX}."
        )
