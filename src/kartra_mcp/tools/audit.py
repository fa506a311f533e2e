"""The audit log: one SQLite row per call that is not a read, and per refusal.

The row is written before the call goes upstream (outcome `unknown`) and completed after, so a
crash or a cancel in between leaves `unknown`, never nothing. Arguments are stored with secrets
redacted and cut to a bounded size; nothing else about the caller's credentials is kept.

Writing happens while the server serves, so every write and count runs in a worker thread: a
database that another process holds locked delays the call that needs it, never the event loop.
If the intent row cannot be written, the call is not sent (`AuditUnavailable`); if the outcome
cannot be written, the outcome is still reported and the failure is logged and returned as text.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread

from kartra_mcp.errors import AuditUnavailable, ConfigError
from kartra_mcp.tools.limits import MAX_DEPTH, depth_of

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# What one row keeps of the arguments, as JSON text; the rest is cut, with a marker saying so.
MAX_STORED_ARGUMENTS = 16_384
BUSY_TIMEOUT = 5.0

Outcome = Literal["unknown", "success", "failed", "declined", "refused", "awaiting_confirmation"]
OUTCOMES: tuple[str, ...] = ("unknown", "success", "failed", "declined", "refused", "awaiting_confirmation")

_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|api[_-]?key|app[_-]?id|authori[sz]ation|cookie|session|credential|card|cvv|iban",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of `value` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and _SECRET_KEY.search(value) and any(mark in value for mark in "=:"):
        pairs = parse_qsl(value, keep_blank_values=True)
        if pairs and "{" not in value and all(k.isprintable() for k, _ in pairs):
            return urlencode([(k, REDACTED if _SECRET_KEY.search(k) else v) for k, v in pairs])
        return f"{REDACTED}: text that names a credential"
    return value


@dataclass(frozen=True)
class AuditRow:
    id: int
    started_at: float
    tool: str
    action: str | None
    arguments: Any
    risk: str
    decision: str
    confirmation: str | None
    outcome: str
    upstream_status: int | None
    duration_ms: float | None
    error: str | None
    connection: str | None
    tenant: str | None = None
    answered_by: str | None = None

    @classmethod
    def from_record(cls, record: Sequence[Any]) -> AuditRow:
        """A row from its columns in table order (arguments as stored JSON text)."""
        return cls(record[0], record[1], record[2], record[3], json.loads(record[4]), *record[5:])

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "tool": self.tool,
            "action": self.action,
            "arguments": self.arguments,
            "risk": self.risk,
            "decision": self.decision,
            "confirmation": self.confirmation,
            "outcome": self.outcome,
            "upstream_status": self.upstream_status,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "connection": self.connection,
            "tenant": self.tenant,
            "answered_by": self.answered_by,
        }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    tool TEXT NOT NULL,
    action TEXT,
    arguments TEXT NOT NULL,
    risk TEXT NOT NULL,
    decision TEXT NOT NULL,
    confirmation TEXT,
    outcome TEXT NOT NULL,
    upstream_status INTEGER,
    duration_ms REAL,
    error TEXT,
    connection TEXT,
    tenant TEXT,
    answered_by TEXT
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
"""


def row_filters(mark: str, **values: Any) -> tuple[str, list[Any]]:
    """A WHERE clause (with the driver's parameter `mark`) for the given filters that are set, and its values."""
    clause = {"since": "started_at >= {}", "tool": "tool = {}", "outcome": "outcome = {}", "tenant": "tenant = {}"}
    used = [(clause[name].format(mark), value) for name, value in values.items() if value is not None]
    where = f"WHERE {' AND '.join(c for c, _ in used)}" if used else ""
    return where, [v for _, v in used]


def sandbox_audit_path(path: Path) -> Path:
    """The sandbox's own log beside the real one (`audit.sqlite3` -> `audit-sandbox.sqlite3`)."""
    return path.with_name(f"{path.stem}-sandbox{path.suffix}")


def stored_arguments(arguments: Any) -> str:
    """The redacted arguments as JSON, cut to `MAX_STORED_ARGUMENTS` characters with a marker."""
    if depth_of(arguments) > MAX_DEPTH:
        return json.dumps(f"[not stored: nested deeper than {MAX_DEPTH} levels]")
    text = json.dumps(redact(arguments), default=str, ensure_ascii=False)
    if len(text) <= MAX_STORED_ARGUMENTS:
        return text
    return json.dumps(f"{text[:MAX_STORED_ARGUMENTS]}… [cut at {MAX_STORED_ARGUMENTS} of {len(text)} characters]")


def fix_for(path: Path | None, exc: BaseException) -> str:
    """What a person does about a failure of the log at `path`, in words."""
    text = str(exc).casefold()
    if "locked" in text or "busy" in text:
        cause = "another process holds it locked (another kartra-mcp, or a program reading it): close that"
    elif "full" in text:
        cause = "the disk holding it is full: free space there"
    elif "readonly" in text or "read-only" in text or "permission" in text or "unable to open" in text:
        cause = "it is not writable: make the file and its directory writable by this user"
    else:
        cause = "check the file"
    return f"{cause}, or set KARTRA_MCP_AUDIT_DB to a file in a writable directory"


class AuditTrail(Protocol):
    """What the pipeline and `kartra-mcp audit` need of an audit log: this SQLite one, or a shared one
    (PostgreSQL, `kartra_mcp.state.postgres`) with the same rows and the same rules."""

    clock: Callable[[], float]
    # Hosted: the tenant this view stamps on its rows and counts caps over; None for the whole log.
    tenant: str | None

    def for_tenant(self, tenant: str) -> AuditTrail:
        """This log as one tenant sees it: its rows stamped with `tenant`, caps counted over them only."""
        ...

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
        """Write a row before a call is sent; raises `AuditUnavailable` when it cannot (then nothing is sent)."""
        ...

    async def finish(
        self, row: int, outcome: Outcome, *, upstream_status: int | None = None, error: str | None = None
    ) -> str | None:
        """Complete a row; never raises: a failure comes back as a sentence for the result."""
        ...

    async def count_since(
        self,
        since: float,
        *,
        risk: str,
        connection: str | None = None,
        outcomes: Sequence[str] = ("success", "unknown", "failed"),
    ) -> int:
        """Calls of `risk` since `since` that may have run; raises `AuditUnavailable` when it cannot count."""
        ...

    def rows(
        self,
        *,
        since: float | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[AuditRow]:
        """The newest rows first, of `tenant` (or this view's) when given (for the CLI and tests; blocks)."""
        ...

    async def read_rows(self, *, since: float | None = None, limit: int = 1000) -> list[AuditRow]:
        """`rows` (of this view's tenant) while serving, without holding up the event loop."""
        ...

    def close(self) -> None: ...


class AuditLog:
    """Append-mostly SQLite log in WAL mode; `path=None` keeps it in memory.

    Opening it writes once (rolled back), so a log that cannot be written stops the start with
    the file and the fix named; `check_writable=False` is for reading only.

    `intent`, `finish`, `count_since` and `read_rows` are awaited while serving and run in a worker
    thread; `rows` and `close` are for the CLI and tests. A lock serialises the one connection.

    Hosted, each person's calls go through `for_tenant(key)`: a view of the same log that stamps
    their tenant on every row and counts only their rows for caps.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT,
        check_writable: bool = True,
    ) -> None:
        self.path = path
        self.clock = clock
        self.tenant: str | None = None
        self._lock = threading.Lock()
        # One worker at a time: calls waiting on a locked file queue here, not in the shared thread pool.
        # Made at the first write or read off the loop: `kartra-mcp audit` reads without an event loop,
        # and making it outside one would import asyncio for nothing.
        self._one_worker: anyio.CapacityLimiter | None = None
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path) if path else ":memory:", check_same_thread=False, isolation_level=None, timeout=busy_timeout
            )
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            # An intent row must survive a crash of the machine too, not only of the process.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._has_tenant = self._migrate("tenant", writable=check_writable)
            self._has_answered_by = self._migrate("answered_by", writable=check_writable)
            if check_writable:
                self._check_writable()
        except (OSError, sqlite3.Error) as exc:
            # The cause stays attached, so `doctor` can put the fix on a line of its own.
            raise ConfigError(f"Cannot write the audit log at {path} ({exc}): {fix_for(path, exc)}.") from exc

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._one_worker is None:
            self._one_worker = anyio.CapacityLimiter(1)
        return self._one_worker

    def _migrate(self, column: str, *, writable: bool) -> bool:
        """Add a column a log from an older version lacks (`tenant`: hosted mode; `answered_by`: who
        confirmed); whether the column exists."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if column in columns:
            return True
        if not writable:
            return False  # read as it is: every row is the one local tenant's, answered by nobody known
        self._db.execute(f"ALTER TABLE calls ADD COLUMN {column} TEXT")
        return True

    def for_tenant(self, tenant: str) -> AuditLog:
        """This log, as seen by one tenant: rows stamped with `tenant`, caps counted over its rows only.

        The view shares the connection and its lock; close the log it came from, not the view.
        """
        view = copy.copy(self)
        view.tenant = tenant
        return view

    def _check_writable(self) -> None:
        """Write once and roll back, so a read-only file or directory is found at start, not at a call."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            # Busy now is not broken; each call waits for the lock in its own time.
            logger.warning("the audit log at %s is locked by another process: %s", self.path, fix_for(self.path, exc))
            return
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            self._db.execute(f"PRAGMA user_version = {version}")
        finally:
            self._db.execute("ROLLBACK")

    async def _run(self, work: Callable[[], _T]) -> _T:
        def locked() -> _T:
            with self._lock:
                return work()

        return await anyio.to_thread.run_sync(locked, limiter=self._limiter())

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
        """Write a row now (dated `at`, or now); its outcome stays `unknown` until `finish` is called.

        `answered_by` says who answered a confirmation, where that is known.

        Raises:
            AuditUnavailable: the row could not be written; a call must not be sent.
        """
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

        def insert() -> int:
            cursor = self._db.execute(
                "INSERT INTO calls (started_at, tool, action, arguments, risk, decision, confirmation, outcome, error,"
                " connection, tenant, answered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cursor.lastrowid or 0)

        try:
            return await self._run(insert)
        except (OSError, sqlite3.Error) as exc:
            logger.error("the audit log at %s could not record a call to %s: %s", self.path, tool, exc)
            raise AuditUnavailable(
                f"The audit log at {self.path or 'memory'} could not record this call ({exc}), so nothing was sent. "
                f"A person must fix it: {fix_for(self.path, exc)}."
            ) from None

    async def finish(
        self, row: int, outcome: Outcome, *, upstream_status: int | None = None, error: str | None = None
    ) -> str | None:
        """Complete a row. Never raises: a failure is logged and returned as text for the result."""
        now = self.clock()

        def update() -> None:
            self._db.execute(
                "UPDATE calls SET outcome = ?, upstream_status = ?, error = ?, finished_at = ?,"
                " duration_ms = (? - started_at) * 1000 WHERE id = ?",
                (outcome, upstream_status, error, now, now, row),
            )

        try:
            await self._run(update)
        except (OSError, sqlite3.Error) as exc:
            logger.error(
                "the audit log at %s could not record the outcome (%s) of row %d: %s", self.path, outcome, row, exc
            )
            return (
                f"The audit log could not record this: {exc}. Its row #{row} still says 'unknown'; the outcome "
                f"above is what happened. A person should fix the log: {fix_for(self.path, exc)}."
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
        """Calls of `risk` since `since` (of one connection, when given; of this view's tenant) that may have run.

        Raises:
            AuditUnavailable: the log cannot be read, so a cap cannot be checked.
        """
        marks = ", ".join("?" for _ in outcomes)
        query = f"SELECT COUNT(*) FROM calls WHERE started_at >= ? AND risk = ? AND outcome IN ({marks})"
        params: tuple[Any, ...] = (since, risk, *outcomes)
        if connection is not None:
            query += " AND connection = ?"
            params = (*params, connection)
        if self.tenant is not None:
            query += " AND tenant = ?"
            params = (*params, self.tenant)

        def count() -> int:
            return int(self._db.execute(query, params).fetchone()[0])

        try:
            return await self._run(count)
        except (OSError, sqlite3.Error) as exc:
            logger.error("the audit log at %s could not be read: %s", self.path, exc)
            raise AuditUnavailable(
                f"The audit log at {self.path or 'memory'} could not be read to check the policy's hourly cap "
                f"({exc}), so nothing was sent. A person must fix it: {fix_for(self.path, exc)}."
            ) from None

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
        if tenant is not None and not self._has_tenant:
            return []  # a log from before hosted mode has no tenant's rows
        where, params = row_filters("?", since=since, tool=tool, outcome=outcome, tenant=tenant)
        query = (
            "SELECT id, started_at, tool, action, arguments, risk, decision, confirmation, outcome, upstream_status,"
            f" duration_ms, error, connection, {'tenant' if self._has_tenant else 'NULL'},"
            f" {'answered_by' if self._has_answered_by else 'NULL'} FROM calls {where}"
            " ORDER BY id DESC LIMIT ?"
        )
        with self._lock:
            found = self._db.execute(query, (*params, limit)).fetchall()
        return [AuditRow.from_record(r) for r in found]

    async def read_rows(self, *, since: float | None = None, limit: int = 1000) -> list[AuditRow]:
        """`rows`, in the worker thread: while a write waits for the file, the event loop does not wait too."""
        read = functools.partial(self.rows, since=since, limit=limit)
        return await anyio.to_thread.run_sync(read, limiter=self._limiter())

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class Journal:
    """The rows one call owes the log besides its intent: refusals, declines, and the outcome.

    The pipeline notes them as it goes, without waiting, and `flush` writes them when the call
    ends, so a refusal never waits on the database and every path leaves its row.
    """

    log: AuditTrail
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _finishes: list[tuple[int, Outcome, int | None, str | None]] = field(default_factory=list)

    def row(self, **values: Any) -> None:
        """A row for a call that was not sent (its outcome is final): the arguments of `AuditLog.intent`."""
        self._rows.append({**values, "at": self.log.clock()})

    def finish(
        self, row: int, outcome: Outcome, *, upstream_status: int | None = None, error: str | None = None
    ) -> None:
        self._finishes.append((row, outcome, upstream_status, error))

    async def flush_shielded(self) -> list[str]:
        """`flush`, finished even when the call is cancelled (rows are owed all the same); nothing to do for a
        read, which owes none, so it skips the cancel scope."""
        if not self._rows and not self._finishes:
            return []
        notes: list[str] = []
        with anyio.CancelScope(shield=True):
            notes = await self.flush()
        return notes

    async def flush(self) -> list[str]:
        """Write what is owed; what could not be written comes back as sentences for the result."""
        notes: list[str] = []
        rows, self._rows = self._rows, []
        for values in rows:
            try:
                await self.log.intent(**values)
            except AuditUnavailable as exc:
                notes.append(f"The audit log could not record this: {exc}")
        finishes, self._finishes = self._finishes, []
        for row, outcome, status, error in finishes:
            note = await self.log.finish(row, outcome, upstream_status=status, error=error)
            if note is not None:
                notes.append(note)
        return notes
