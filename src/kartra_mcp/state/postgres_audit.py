"""The audit log in PostgreSQL, for replicas that share one: the same rows and rules as the SQLite log.

The intent row is committed (autocommit) before a call is sent, and if it cannot be, the call is
not sent (`AuditUnavailable`); the outcome completes it after. A database that is down at start
does not stop the server: reads keep working, and each write tries to reconnect.

Imported only when `KARTRA_MCP_AUDIT_DSN` is set; `psycopg` comes with the `hosted` extra.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg

from kartra_mcp.errors import AuditUnavailable
from kartra_mcp.state.postgres_lock import CONNECT_TIMEOUT, DSN_FIX, AdvisoryLock, advisory_key
from kartra_mcp.tools.audit import AuditRow, Outcome, row_filters, stored_arguments

logger = logging.getLogger(__name__)

_COLUMNS = (
    "id, started_at, tool, action, arguments, risk, decision, confirmation, outcome, upstream_status,"
    " duration_ms, error, connection, tenant, answered_by"
)


def _schema(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    id BIGSERIAL PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    tool TEXT NOT NULL,
    action TEXT,
    arguments TEXT NOT NULL,
    risk TEXT NOT NULL,
    decision TEXT NOT NULL,
    confirmation TEXT,
    outcome TEXT NOT NULL,
    upstream_status INTEGER,
    duration_ms DOUBLE PRECISION,
    error TEXT,
    connection TEXT,
    tenant TEXT,
    answered_by TEXT
);
CREATE INDEX IF NOT EXISTS {table}_started ON {table} (started_at);
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS tenant TEXT;
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS answered_by TEXT;
"""


@dataclass
class _Link:
    """The one connection a log and its tenant views share, used one statement at a time."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    db: psycopg.AsyncConnection[Any] | None = None


class PostgresAuditLog:
    """The `AuditTrail` in a PostgreSQL table (`calls`, or `sandbox_calls` for the sandbox's play).

    One connection, used one statement at a time, reopened after a failure. Hosted, each person's
    calls go through `for_tenant(key)`: a view on the same connection that stamps their tenant on
    every row and counts caps over their rows only.
    """

    def __init__(self, dsn: str, *, table: str = "calls", clock: Callable[[], float] = time.time) -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self._dsn = dsn
        self.table = table
        self.clock = clock
        self.tenant: str | None = None
        self._link = _Link()

    def cap_lock(self, timeout: float) -> AdvisoryLock:
        """What replicas sharing this table hold from the count of the hourly cap to the intent row.

        One key per table (the sandbox's `sandbox_calls` apart from `calls`), whatever the tenant.
        """
        return AdvisoryLock(self._dsn, advisory_key(self.table), what=f"table {self.table}", timeout=timeout)

    def for_tenant(self, tenant: str) -> PostgresAuditLog:
        view = copy.copy(self)
        view.tenant = tenant
        return view

    async def start(self) -> None:
        """Connect and make the table now if the database answers; if not, say so and go on."""
        problem = await self.problem()
        if problem is not None:
            logger.warning("%s; writes are refused until it answers", problem)

    async def problem(self) -> str | None:
        """Why the log cannot be written now, with the fix; None when it can (the table is made)."""
        try:
            async with self._link.lock:
                await self._connection()
        except psycopg.Error as exc:
            return f"the audit log in PostgreSQL is unreachable ({type(exc).__name__}: {exc}): {DSN_FIX}"
        return None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._link.db is None or self._link.db.closed:
            db = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            # Two replicas starting at once must not both create the table.
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock(hashtext('kartra-mcp audit schema'))")
                await db.execute(_schema(self.table))
            self._link.db = db
        return self._link.db

    async def _execute(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._link.lock:
            try:
                db = await self._connection()
                cursor = await db.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                # The connection may be broken: the next statement opens a new one.
                await self._drop()
                raise

    async def _drop(self) -> None:
        db, self._link.db = self._link.db, None
        if db is not None:
            try:
                await db.close()
            except psycopg.Error as exc:
                logger.debug("closing a broken audit connection: %s", exc)

    async def intent(
        self,
        *,
        tool: str,
        action: str | None,
        arguments: Any,
        risk: str,
        decision: str,
        confirmation: str | None,
        connection: str | None,
        outcome: Outcome = "unknown",
        error: str | None = None,
        at: float | None = None,
        answered_by: str | None = None,
    ) -> int:
        values = (
            self.clock() if at is None else at,
            tool,
            action,
            stored_arguments(arguments),
            risk,
            decision,
            confirmation,
            outcome,
            error,
            connection,
            self.tenant,
            answered_by,
        )
        try:
            found = await self._execute(
                f"INSERT INTO {self.table} (started_at, tool, action, arguments, risk, decision, confirmation,"
                " outcome, error, connection, tenant, answered_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                values,
            )
        except psycopg.Error as exc:
            logger.error("the audit log in PostgreSQL could not record a call to %s: %s", tool, exc)
            raise AuditUnavailable(
                f"The audit log in PostgreSQL could not record this call ({type(exc).__name__}: {exc}), so nothing "
                f"was sent. A person must fix it: {DSN_FIX}."
            ) from None
        return int(found[0][0])

    async def finish(
        self, row: int, outcome: Outcome, *, upstream_status: int | None = None, error: str | None = None
    ) -> str | None:
        now = self.clock()
        try:
            await self._execute(
                f"UPDATE {self.table} SET outcome = %s, upstream_status = %s, error = %s, finished_at = %s,"
                " duration_ms = (%s - started_at) * 1000 WHERE id = %s",
                (outcome, upstream_status, error, now, now, row),
            )
        except psycopg.Error as exc:
            logger.error(
                "the audit log in PostgreSQL could not record the outcome (%s) of row %d: %s", outcome, row, exc
            )
            return (
                f"The audit log could not record this: {exc}. Its row #{row} still says 'unknown'; the outcome "
                f"above is what happened. A person should fix the log: {DSN_FIX}."
            )
        return None

    async def count_since(
        self,
        since: float,
        *,
        risk: str,
        connection: str | None = None,
        outcomes: Sequence[str] = ("success", "unknown", "failed"),
    ) -> int:
        query = f"SELECT COUNT(*) FROM {self.table} WHERE started_at >= %s AND risk = %s AND outcome = ANY(%s)"
        params: list[Any] = [since, risk, list(outcomes)]
        if connection is not None:
            query += " AND connection = %s"
            params.append(connection)
        if self.tenant is not None:
            query += " AND tenant = %s"
            params.append(self.tenant)
        try:
            found = await self._execute(query, params)
        except psycopg.Error as exc:
            logger.error("the audit log in PostgreSQL could not be read: %s", exc)
            raise AuditUnavailable(
                f"The audit log in PostgreSQL could not be read to check the policy's hourly cap ({exc}), so "
                f"nothing was sent. A person must fix it: {DSN_FIX}."
            ) from None
        return int(found[0][0])

    def rows(
        self,
        *,
        since: float | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AuditRow]:
        tenant = tenant if tenant is not None else self.tenant
        where, params = row_filters("%s", since=since, tool=tool, outcome=outcome, tenant=tenant)
        query = f"SELECT {_COLUMNS} FROM {self.table} {where} ORDER BY id DESC LIMIT %s"
        with psycopg.connect(self._dsn, connect_timeout=CONNECT_TIMEOUT) as db:
            exists = db.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()
            found = db.execute(query, (*params, limit)).fetchall() if exists and exists[0] else []
        return [AuditRow.from_record(r) for r in found]

    async def read_rows(self, *, since: float | None = None, limit: int = 1000) -> list[AuditRow]:
        where, params = row_filters("%s", since=since, tenant=self.tenant)
        query = f"SELECT {_COLUMNS} FROM {self.table} {where} ORDER BY id DESC LIMIT %s"
        try:
            found = await self._execute(query, (*params, limit))
        except psycopg.Error as exc:
            logger.error("the audit log in PostgreSQL could not be read: %s", exc)
            raise AuditUnavailable(f"The audit log in PostgreSQL could not be read ({exc}): {DSN_FIX}.") from None
        return [AuditRow.from_record(r) for r in found]

    def close(self) -> None:
        """Nothing to do here: the serving connection is closed by `aclose`."""

    async def aclose(self) -> None:
        async with self._link.lock:
            await self._drop()
