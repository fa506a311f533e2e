"""Shared fixtures: a clean environment, the sandbox, a Membrane client over it, a runtime and server."""

from __future__ import annotations

import inspect
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kartra_mcp.config import Settings
from kartra_mcp.membrane import MembraneClient, RetryPolicy
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import Runtime, membrane_client, open_runtime
from tests.routes import sandbox_config
from tests.services import PostgresServer, RedisServer, postgres_server, redis_server

pytest_plugins = ["tests.browser"]


async def _no_sleep(seconds: float) -> None:
    """Backoff without waiting: the tests count attempts, not seconds."""


FAST_RETRY = RetryPolicy(attempts=4, base=0.0, cap=0.0, jitter=lambda: 0.0, sleep=_no_sleep)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start, however the suite itself was started.

    A shell without job control starts a background job with SIGINT ignored, and every process it
    starts inherits that: the tests that press Ctrl-C on a real `kartra-mcp` would see it ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark every async test for anyio before it is parametrized."""
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's Membrane credentials, proxies or state directories."""
    import os

    for name in list(os.environ):
        if name.startswith(("MEMBRANE_", "KARTRA_MCP_", "INTEGRATION_APP_")) or name.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy",
        ):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))


@pytest.fixture
def route() -> str:
    """How runs and raw requests reach Membrane; tests parametrize it with `tests.routes.ROUTES`."""
    return "act"


@pytest.fixture
def sandbox(route: str) -> Iterator[Sandbox]:
    box = Sandbox(sandbox_config(route))
    yield box
    box.close()


@pytest.fixture
def samples(sandbox: Sandbox) -> dict[str, Any]:
    samples: dict[str, Any] = sandbox.state()["samples"]
    return samples


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(audit_db=tmp_path / "audit.sqlite3", cache_dir=tmp_path / "cache")


@pytest.fixture
async def membrane(sandbox: Sandbox, settings: Settings) -> AsyncIterator[MembraneClient]:
    async with membrane_client(settings, sandbox=sandbox, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
async def runtime(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as opened:
        yield opened


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every MCP test runs in both protocol eras: the 2025-11-25 handshake and 2026-07-28."""
    era: str = request.param
    return era


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session; each test takes a database of its own (`audit_dsn`)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def audit_dsn(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own (it starts in milliseconds, and some tests kill it)."""
    with redis_server(tmp_path / "redis") as server:
        yield server
