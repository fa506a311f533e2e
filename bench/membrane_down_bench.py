"""`kartra-mcp serve` with Membrane down: seconds from process start to the first tools/list
answer over stdio, with and without a cached catalog, for a Membrane that refuses connections and
one that accepts them and never answers; and seconds from a standalone sandbox answering on
Membrane's port to the client's list-changed notice. Baseline: the same start on the embedded
sandbox (`serve --sandbox`), where nothing is down.

    python bench/membrane_down_bench.py [--start-timeout 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import ToolListChangedNotification
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox, asgi_transport
from kartra_mcp.server.runtime import open_runtime


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _membrane(how: str) -> Iterator[str]:
    if how == "refused":
        yield f"http://127.0.0.1:{_free_port()}"
        return
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


async def _warm(cache: Path, url: str) -> None:
    sandbox = Sandbox()
    settings = Settings(
        audit_db=cache.parent / "warm.sqlite3",
        cache_dir=cache,
        membrane_api_url=url,
        membrane_token=SecretStr(sandbox.token),
    )
    async with open_runtime(settings, transport=asgi_transport(sandbox)):
        pass
    sandbox.close()


def _params(directory: Path, url: str, start_timeout: float) -> StdioServerParameters:
    env = {
        "MEMBRANE_API_URL": url,
        "MEMBRANE_TOKEN": Sandbox().token,
        "KARTRA_MCP_CACHE_DIR": str(directory / "cache"),
        "KARTRA_MCP_AUDIT_DB": str(directory / "audit.sqlite3"),
        "KARTRA_MCP_START_TIMEOUT": str(start_timeout),
        "NO_PROXY": "127.0.0.1",
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "kartra_mcp", "serve"], env=env)


async def _first_list(directory: Path, url: str, start_timeout: float, *, sandbox: bool = False) -> tuple[float, int]:
    params = _params(directory, url, start_timeout)
    if sandbox:
        params = params.model_copy(update={"args": [*params.args, "--sandbox"]})
    with (directory / "stderr.txt").open("w") as errlog:
        started = time.perf_counter()
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = (await client.list_tools()).tools
            return time.perf_counter() - started, len(tools)


async def _recovery(directory: Path, start_timeout: float) -> float:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    told = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            told.set()

    with (directory / "stderr.txt").open("w") as errlog:
        transport = stdio_client(_params(directory, url, start_timeout), errlog=errlog)
        async with Client(transport, mode="legacy", message_handler=on_message) as client:
            await client.list_tools()
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            sandbox = subprocess.Popen(
                [sys.executable, "-m", "kartra_mcp", "sandbox", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while True:
                    try:
                        httpx2.get(f"{url}/_sandbox/state", timeout=1, trust_env=False)
                        break
                    except httpx2.TransportError:
                        await anyio.sleep(0.05)
                answering = time.perf_counter()
                await told.wait()
                return time.perf_counter() - answering
            finally:
                sandbox.terminate()
                sandbox.wait(timeout=10)


async def main(start_timeout: float) -> None:
    print(f"serve with Membrane down (KARTRA_MCP_START_TIMEOUT={start_timeout:g})")
    print("  seconds from process start to the first tools/list answer over stdio:")
    with tempfile.TemporaryDirectory() as scratch:
        baseline, count = await _first_list(Path(scratch), "http://127.0.0.1:9", start_timeout, sandbox=True)
    print(f"    {'baseline: embedded sandbox, up':<34} {baseline:6.2f} s   {count} tools")
    for cached in (True, False):
        for how in ("refused", "silent"):
            with tempfile.TemporaryDirectory() as scratch, _membrane(how) as url:
                directory = Path(scratch)
                if cached:
                    await _warm(directory / "cache", url)
                seconds, count = await _first_list(directory, url, start_timeout)
            label = f"{'cached catalog' if cached else 'no cache'}, Membrane {how}"
            print(f"    {label:<34} {seconds:6.2f} s   {count} tools   x{seconds / baseline:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        seconds = await _recovery(Path(scratch), start_timeout)
    print(f"  Membrane back (no cache at start): list-changed notice {seconds:.2f} s after it answers")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-timeout", type=float, default=10.0)
    anyio.run(main, parser.parse_args().start_timeout)
