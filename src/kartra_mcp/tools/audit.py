"""The audit log: one SQLite row per call that is not a read, and per refusal.

The row is written before the call goes upstream (outcome `unknown`) and completed after, so a
crash or a cancel in between leaves `unknown`, never nothing. Arguments are stored with secrets
redacted; nothing else about the caller's credentials is kept.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from kartra_mcp.errors import ConfigError

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
    answered_by: str | None = None

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
    connection TEXT
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
"""


class AuditLog:
    """Append-mostly SQLite log in WAL mode; `path=None` keeps it in memory."""

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            # An intent row must survive a crash of the machine too, not only of the process.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "answered_by" not in columns:  # a log written before who answered was recorded
                self._db.execute("ALTER TABLE calls ADD COLUMN answered_by TEXT")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the audit log at {path} ({exc}); set KARTRA_MCP_AUDIT_DB to a file in a "
                "writable directory."
            ) from None

    def intent(
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
        answered_by: str | None = None,
    ) -> int:
        """Write a row now; its outcome stays `unknown` until `finish` is called."""
        cursor = self._db.execute(
            "INSERT INTO calls (started_at, tool, action, arguments, risk, decision, confirmation, outcome, error,"
            " connection, answered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._clock(),
                tool,
                action,
                json.dumps(redact(arguments), default=str),
                risk,
                decision,
                confirmation,
                outcome,
                error,
                connection,
                answered_by,
            ),
        )
        return int(cursor.lastrowid or 0)

    def finish(
        self, row: int, outcome: Outcome, *, upstream_status: int | None = None, error: str | None = None
    ) -> None:
        now = self._clock()
        self._db.execute(
            "UPDATE calls SET outcome = ?, upstream_status = ?, error = ?, finished_at = ?,"
            " duration_ms = (? - started_at) * 1000 WHERE id = ?",
            (outcome, upstream_status, error, now, now, row),
        )

    def count_since(
        self, since: float, *, risk: str, outcomes: Sequence[str] = ("success", "unknown", "failed")
    ) -> int:
        marks = ", ".join("?" for _ in outcomes)
        row = self._db.execute(
            f"SELECT COUNT(*) FROM calls WHERE started_at >= ? AND risk = ? AND outcome IN ({marks})",
            (since, risk, *outcomes),
        ).fetchone()
        return int(row[0])

    def rows(
        self,
        *,
        since: float | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        limit: int = 1000,
    ) -> list[AuditRow]:
        clauses, params = [], []
        for clause, value in (("started_at >= ?", since), ("tool = ?", tool), ("outcome = ?", outcome)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = (
            "SELECT id, started_at, tool, action, arguments, risk, decision, confirmation, outcome, upstream_status,"
            f" duration_ms, error, connection, answered_by FROM calls {where} ORDER BY id DESC LIMIT ?"
        )
        found = self._db.execute(query, (*params, limit)).fetchall()
        return [AuditRow(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:]) for r in found]

    def close(self) -> None:
        self._db.close()
