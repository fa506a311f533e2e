"""Real processes for tests: start, wait for, and always stop them (and whatever they started).

Used wherever a test needs kartra-mcp as a separate process: the standalone sandbox on a real port,
the server over stdio or HTTP, and the third-party clients of the interoperability tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

_PRIVATE_PREFIXES = ("MEMBRANE_", "KARTRA_MCP_", "INTEGRATION_APP_")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def without_private(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without Membrane or kartra-mcp settings."""
    return {k: v for k, v in env.items() if not k.startswith(_PRIVATE_PREFIXES)}


def local_env(path_first: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a process that only talks to this machine: no proxies, no credentials.

    With `path_first`, that directory comes first on PATH.
    """
    env = {k: v for k, v in without_private(os.environ).items() if k.lower() not in _PROXIES}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", NO_COLOR="1", **extra)
    if path_first is not None:
        env["PATH"] = os.pathsep.join([str(path_first), *[p for p in env.get("PATH", "").split(os.pathsep) if p]])
    return env


@dataclass(frozen=True)
class Finished:
    """A finished subprocess, with what it said."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self, limit: int = 6000) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout[-limit:]}\n--- stderr\n{self.stderr[-limit:]}"
        )


def end(process: subprocess.Popen[Any]) -> None:
    """Stop a process started with its own session, and whatever it started, by its group id."""
    if process.poll() is None:
        if os.name == "nt":
            process.terminate()
        else:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if os.name == "nt":
                process.kill()
            else:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if os.name != "nt":
        # Children it left behind (npx's package binary, a stdio MCP server), if any.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=os.name != "nt",
        **kwargs,
    )


def run(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, timeout: float) -> Finished:
    """Run to completion within `timeout` seconds; on overrun, stop it and everything it started, and fail."""
    started = time.monotonic()
    process = spawn(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end(process)
        stdout, stderr = process.communicate(timeout=10)
        pytest.fail(
            "timed out:\n" + Finished(argv, process.returncode, stdout, stderr, time.monotonic() - started).explain()
        )
    finally:
        end(process)
    return Finished(argv, process.returncode, stdout, stderr, time.monotonic() - started)


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `ready` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A long-running subprocess (the sandbox, an HTTP MCP server) with its output in files."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.argv = list(argv)
        self.stdout_path = logs / "stdout.txt"
        self.stderr_path = logs / "stderr.txt"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = spawn(argv, env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def explain(self) -> str:
        status = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        return (
            f"$ {' '.join(self.argv)} ({status})\n--- stdout\n{self.output()[-4000:]}\n"
            f"--- stderr\n{self.stderr_path.read_text(errors='replace')[-8000:]}"
        )

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited early:\n{self.explain()}")
        return True

    def wait_http(self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 60) -> httpx2.Response:
        """Poll `url` until the server answers; fail at once if the answer is not a 200."""
        answer: list[httpx2.Response] = []

        def answered() -> bool:
            self.alive()
            try:
                answer.append(httpx2.get(url, headers=dict(headers or {}), timeout=5, trust_env=False))
            except httpx2.TransportError:
                return False
            return True

        wait_until(answered, timeout=timeout, what=f"{url} to answer:\n{self.explain()}")
        response = answer[-1]
        if response.status_code != 200:
            pytest.fail(f"GET {url} answered {response.status_code}, not 200: {response.text[:2000]}\n{self.explain()}")
        return response

    def stop(self) -> None:
        end(self.process)


@dataclass(frozen=True)
class StandaloneSandbox:
    url: str
    token: str
    server: Server

    def client_env(self, state: Path, **extra: str) -> dict[str, str]:
        """The environment of a kartra-mcp process using this sandbox as Membrane, its log and cache in `state`."""
        return local_env(
            None,
            MEMBRANE_API_URL=self.url,
            MEMBRANE_TOKEN=self.token,
            KARTRA_MCP_AUDIT_DB=str(state / "audit.sqlite3"),
            KARTRA_MCP_CACHE_DIR=str(state / "cache"),
            **extra,
        )

    def state(self) -> dict[str, Any]:
        response = httpx2.get(
            f"{self.url}/_sandbox/state", headers={"Authorization": f"Bearer {self.token}"}, timeout=10, trust_env=False
        )
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the sandbox's fault rules."""
        response = httpx2.put(
            f"{self.url}/_sandbox/faults",
            headers={"Authorization": f"Bearer {self.token}"},
            json=rules,
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()

    def requests(self) -> list[dict[str, str]]:
        response = httpx2.get(
            f"{self.url}/_sandbox/requests",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            trust_env=False,
        )
        response.raise_for_status()
        seen: list[dict[str, str]] = response.json()["requests"]
        return seen


@contextmanager
def standalone_sandbox(logs: Path, *args: str, port: int | None = None) -> Iterator[StandaloneSandbox]:
    """`python -m kartra_mcp sandbox` on a loopback port, read from what it prints; stopped afterwards."""
    port = port or free_port()
    server = Server(
        [sys.executable, "-m", "kartra_mcp", "sandbox", "--host", "127.0.0.1", "--port", str(port), *args],
        env=local_env(PYTHONUNBUFFERED="1"),
        logs=logs,
    )
    try:

        def printed() -> bool:
            server.alive()
            return any(line.startswith("token: ") for line in server.output().splitlines())

        wait_until(printed, timeout=60, what=f"the sandbox's address and token:\n{server.explain()}")
        lines = server.output().splitlines()
        url = next(line for line in lines if " at http://" in line).rsplit(" at ", 1)[1].strip()
        token = next(line for line in lines if line.startswith("token: ")).removeprefix("token: ").strip()
        assert url == f"http://127.0.0.1:{port}", server.explain()
        server.wait_http(f"{url}/_sandbox/state", headers={"Authorization": f"Bearer {token}"})
        yield StandaloneSandbox(url=url, token=token, server=server)
    finally:
        server.stop()


_HOLD_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def write_lock_held(database: Path) -> Iterator[None]:
    """Another process holds the write lock of the SQLite file `database` until the block ends."""
    process = spawn([sys.executable, "-c", _HOLD_WRITE_LOCK, str(database)], env=local_env(), stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "locked":
            pytest.fail(f"the lock-holding process did not take the lock on {database}")
        yield
    finally:
        end(process)  # its death releases the lock
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be written, even by root (immutable there, where permission bits do not bind)."""
    if os.name == "nt":
        pytest.skip("read-only files are not modelled on Windows")
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and this file system cannot mark a file immutable (chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


_HOLD_FILE_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def file_lock_held(path: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the `flock` of `path` (made if missing) until the block ends or it is released.

    Gives the release: it ends the holding process, whose death drops the lock.
    """
    if os.name == "nt":
        pytest.skip("the holding process uses flock")
    process = spawn([sys.executable, "-c", _HOLD_FILE_LOCK, str(path)], env=local_env(), stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "locked":
            pytest.fail(f"the lock-holding process did not take the lock on {path}")
        yield lambda: end(process)
    finally:
        end(process)
        if process.stdout is not None:
            process.stdout.close()
