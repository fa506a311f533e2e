"""The real server process with Membrane down at start: refusing connections, or accepting and never answering.

A start with a cached catalog serves it at once; a start without one says what is wrong and serves
anyway; Membrane coming back brings the current list and a list-changed notice; a taken HTTP port is
one line.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import TextContent, ToolListChangedNotification
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox, asgi_transport
from kartra_mcp.server.runtime import open_runtime
from tests.conftest import FAST_RETRY
from tests.processes import free_port, local_env, run, standalone_sandbox
from tests.server.conftest import DROPPED, age_the_cache

Down = Literal["refused", "silent"]


@contextmanager
def _membrane_down(how: Down) -> Iterator[str]:
    """A Membrane URL that refuses connections, or whose port accepts them and never answers."""
    if how == "refused":
        yield f"http://127.0.0.1:{free_port()}"
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes handshakes; nobody ever reads
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


async def _warm_cache(tmp_path: Path, url: str, *, aged: bool = False) -> None:
    """The catalog cache (and remembered connection) an earlier session against `url` left behind.

    With `aged`, the cache is an older catalog, without two of today's actions.
    """
    sandbox = Sandbox()
    try:
        settings = Settings(
            audit_db=tmp_path / "earlier-audit.sqlite3",
            cache_dir=tmp_path / "cache",
            membrane_api_url=url,
            membrane_token=SecretStr(sandbox.token),
        )
        async with open_runtime(settings, transport=asgi_transport(sandbox), retry=FAST_RETRY):
            pass
    finally:
        sandbox.close()
    if aged:
        age_the_cache(tmp_path / "cache")


def _server(tmp_path: Path, url: str) -> StdioServerParameters:
    """`kartra-mcp serve` over stdio against the Membrane at `url`, waiting at most 2 s for it at start."""
    env = local_env(
        MEMBRANE_API_URL=url,
        MEMBRANE_TOKEN=Sandbox().token,
        KARTRA_MCP_CACHE_DIR=str(tmp_path / "cache"),
        KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"),
        KARTRA_MCP_START_TIMEOUT="2",
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "kartra_mcp", "serve"], env=env)


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


# The era does not change how a start goes; each way of being down meets one of them.
ERAS = [("refused", "legacy"), ("silent", "auto")]


@pytest.mark.parametrize(("how", "era"), ERAS)
async def test_a_start_with_a_cached_catalog_serves_it_while_membrane_is_down(
    tmp_path: Path, how: Down, era: str
) -> None:
    with _membrane_down(how) as url:
        await _warm_cache(tmp_path, url)
        with (tmp_path / "stderr.txt").open("w") as errlog:
            # Far below the 263 s a silent Membrane used to hold the start for; only a hang guard.
            with anyio.fail_after(60):
                async with Client(stdio_client(_server(tmp_path, url), errlog=errlog), mode=era) as client:
                    names = {t.name for t in (await client.list_tools()).tools}
                    if how == "refused":
                        tags = await client.call_tool("retrieve-account-tags", {})
    assert names >= DROPPED and "kartra-api-request" in names
    if how == "refused":
        assert tags.is_error and url in _text(tags)


@pytest.mark.parametrize(("how", "era"), ERAS)
async def test_a_start_without_a_cache_and_membrane_down_serves_and_says_what_is_wrong(
    tmp_path: Path, how: Down, era: str
) -> None:
    with _membrane_down(how) as url, (tmp_path / "stderr.txt").open("w") as errlog:
        with anyio.fail_after(60):
            async with Client(stdio_client(_server(tmp_path, url), errlog=errlog), mode=era) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("kartra-api-request", {"method": "GET", "path": "/"})
                instructions = client.instructions
    said = "Kartra is not available yet: " + (
        f"Could not reach Membrane at {url}: ConnectError" if how == "refused" else f"Membrane at {url} did not answer"
    )
    assert not DROPPED & names
    assert result.is_error and _text(result).startswith(said)
    assert "MEMBRANE_API_URL" in _text(result) and "kartra-mcp doctor" in _text(result)
    assert instructions is not None and instructions.startswith(f"AT START: {said}")
    assert said in (tmp_path / "stderr.txt").read_text()


@pytest.mark.parametrize(("start", "era"), [("cached", "legacy"), ("cold", "auto")])
async def test_membrane_coming_back_brings_the_current_list_and_tells_the_client(
    tmp_path: Path, start: str, era: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if start == "cached":
        await _warm_cache(tmp_path, url, aged=True)
    told = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            told.set()

    with (tmp_path / "stderr.txt").open("w") as errlog, anyio.fail_after(120):
        transport = stdio_client(_server(tmp_path, url), errlog=errlog)
        async with Client(transport, mode=era, message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            if era == "legacy":
                with standalone_sandbox(tmp_path / "sandbox", port=port):
                    await told.wait()
                    after = {t.name for t in (await client.list_tools()).tools}
                    tags = await client.call_tool("retrieve-account-tags", {})
            else:
                async with client.listen(tools_list_changed=True) as subscription:
                    with standalone_sandbox(tmp_path / "sandbox", port=port):
                        async for _event in subscription:
                            break
                        after = {t.name for t in (await client.list_tools()).tools}
                        tags = await client.call_tool("retrieve-account-tags", {})
    assert not DROPPED & before
    assert after >= DROPPED
    assert not tags.is_error, _text(tags)


def test_http_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox", "--transport", "http", "--port", str(port)]
        env = local_env(
            KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"), KARTRA_MCP_CACHE_DIR=str(tmp_path / "cache")
        )
        finished = run(argv, env=env, timeout=60)
    assert finished.returncode != 0, finished.explain()
    assert "Traceback" not in finished.stderr, finished.explain()
    (line,) = [line for line in finished.stderr.splitlines() if str(port) in line]
    assert line.startswith(f"kartra-mcp: Cannot listen on 127.0.0.1:{port}") and "--port" in line


@pytest.mark.parametrize("content", ["[]", "null"])
async def test_a_start_with_an_unusable_cache_serves_the_catalog_from_membrane(tmp_path: Path, content: str) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as membrane:
        await _warm_cache(tmp_path, membrane.url)
        (path,) = (tmp_path / "cache").glob("catalog-*.json")
        path.write_text(content)
        with (tmp_path / "stderr.txt").open("w") as errlog, anyio.fail_after(60):
            async with Client(stdio_client(_server(tmp_path, membrane.url), errlog=errlog), mode="legacy") as client:
                names = {t.name for t in (await client.list_tools()).tools}
    said = (tmp_path / "stderr.txt").read_text()
    assert names >= DROPPED
    assert "Traceback" not in said and f"ignoring the catalog cache {path}" in said
    assert json.loads(path.read_text())["actions"]  # written again
