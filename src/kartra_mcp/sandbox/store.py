"""Where the sandbox keeps its state: in memory only, or written through to SQLite.

The account always works on in-memory dicts (constant-time lookups at any size); a store only
makes changes durable. `SqliteStore` writes each changed record as one JSON row and commits once
per handled request, so a restart with the same file finds the account as it was left.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol


class Store(Protocol):
    """Durable storage of records by kind and key."""

    # False when nothing is kept, so callers can skip serialising records for it.
    durable: bool

    def put(self, kind: str, key: str, data: dict[str, Any]) -> None: ...

    def put_many(self, kind: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None: ...

    def load(self, kind: str) -> Iterator[dict[str, Any]]: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def is_empty(self) -> bool: ...

    def clear(self) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """Keeps nothing: the in-memory account is the only copy."""

    durable = False

    def __init__(self) -> None:
        self._meta: dict[str, str] = {}

    def put(self, kind: str, key: str, data: dict[str, Any]) -> None:
        pass

    def put_many(self, kind: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        pass

    def load(self, kind: str) -> Iterator[dict[str, Any]]:
        return iter(())

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value

    def is_empty(self) -> bool:
        return True

    def clear(self) -> None:
        self._meta.clear()

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStore:
    """One table of JSON records keyed by (kind, key), plus a small metadata table."""

    durable = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level="DEFERRED")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,"
            " PRIMARY KEY (kind, key)) WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def put(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records (kind, key, data) VALUES (?, ?, ?)", (kind, key, json.dumps(data))
        )

    def put_many(self, kind: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO records (kind, key, data) VALUES (?, ?, ?)",
            ((kind, key, json.dumps(data)) for key, data in items),
        )

    def load(self, kind: str) -> Iterator[dict[str, Any]]:
        for (data,) in self._db.execute("SELECT data FROM records WHERE kind = ?", (kind,)):
            yield json.loads(data)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchone() is None

    def clear(self) -> None:
        self._db.execute("DELETE FROM records")
        self._db.execute("DELETE FROM meta")
        self._db.commit()

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()
