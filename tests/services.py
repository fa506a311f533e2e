"""Real Redis and PostgreSQL servers for the tests of shared state, on loopback ports, stopped afterwards.

From Debian's packages (`redis-server`, `postgresql`; `.ci/run` installs them). PostgreSQL refuses
to run as root, so as root its data directory belongs to the `postgres` user and it runs as that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import Server, local_env, wait_until

_PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _missing(program: str) -> None:
    message = f"{program} is not installed: apt-get install -y redis-server postgresql (as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class RedisServer:
    url: str
    port: int
    server: Server

    def kill(self) -> None:
        """Stop it now, as a crash would."""
        self.server.stop()


@contextmanager
def redis_server(logs: Path, port: int | None = None) -> Iterator[RedisServer]:
    """`redis-server` on a loopback port (a free one by default), without persistence."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        _missing("redis-server")
    assert binary is not None
    port = port or _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = Server([*argv, "--dir", str(logs)], env=local_env(), logs=logs)
    try:
        wait_until(lambda: server.alive() and _answers(port), timeout=30, what=f"redis-server:\n{server.explain()}")
        yield RedisServer(f"redis://127.0.0.1:{port}/0", port, server)
    finally:
        server.stop()


@dataclass
class PostgresServer:
    port: int
    server: Server
    _databases: int = 0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://kartra@127.0.0.1:{self.port}/{database}"

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        import psycopg

        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway cluster (initdb) on a free loopback port; user `kartra`, trusted on loopback."""
    if not _PG_BIN:
        _missing("PostgreSQL (/usr/lib/postgresql/*/bin)")
    bin_dir = Path(_PG_BIN[-1])
    # Not under pytest's root-only temporary directory: the postgres user must reach it.
    base = Path(tempfile.mkdtemp(prefix="kartra-mcp-pg-"))
    data, logs = base / "data", base / "logs"
    try:
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "kartra", "--auth=trust", "-E", "UTF8", "--no-sync"]
        done = subprocess.run(_as_postgres(initdb), capture_output=True, text=True, timeout=120, env=local_env())
        assert done.returncode == 0, done.stdout + done.stderr
        port = _free_port()
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(base)]
        # Throwaway data: no waiting for the disk.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        server = Server(_as_postgres(argv), env=local_env(), logs=logs)
        try:
            found = PostgresServer(port, server)
            wait_until(lambda: server.alive() and found.ready(), timeout=60, what=f"postgres:\n{server.explain()}")
            yield found
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def haproxy_entry(config: Path, backends: dict[str, str], logs: Path) -> Iterator[str]:
    """HAProxy with the project's `config`, its servers pointed at `backends` (name -> host:port); its URL."""
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if binary is None:
        _missing("haproxy")
    assert binary is not None
    port = _free_port()
    text = config.read_text().replace("bind :8000", f"bind 127.0.0.1:{port}")
    for name, address in backends.items():
        text = text.replace(f"{name}:8000", address)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "haproxy.cfg").write_text(text)
    server = Server([binary, "-db", "-f", str(logs / "haproxy.cfg")], env=local_env(), logs=logs)
    try:
        wait_until(lambda: server.alive() and _answers(port), timeout=30, what=f"haproxy:\n{server.explain()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
