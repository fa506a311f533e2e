"""The real server process: stdio with the SDK's stdio client, and streamable HTTP on a real socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.processes import Server, free_port, local_env, wait_until
from tests.server.conftest import Person


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "KARTRA_MCP_AUDIT_DB": str(tmp_path / "audit.sqlite3"),
        "KARTRA_MCP_CACHE_DIR": str(tmp_path / "cache"),
        "KARTRA_MCP_LOG_LEVEL": "WARNING",
        **extra,
    }


async def test_the_server_speaks_both_eras_over_stdio(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "kartra_mcp", "serve", "--sandbox"], env=_env(tmp_path)
    )
    with anyio.fail_after(60):
        async with Client(params, mode=mode) as client:
            tools = await client.list_tools()
            result = await client.call_tool("retrieve-account-tags", {})
            instructions = client.instructions
    assert "get-lead" in {t.name for t in tools.tools}
    assert not result.is_error
    assert result.structured_content is not None and "VIP" in result.structured_content["account_tags"]
    assert instructions is not None and instructions.startswith("SANDBOX")


@contextmanager
def _http_process(tmp_path: Path, *, host: str = "127.0.0.1", **env: str) -> Iterator[tuple[str, Server]]:
    """`kartra-mcp serve --sandbox --transport http` on a free port of `host`; yields its base URL and process."""
    port = free_port()
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox", "--transport", "http"]
    server = Server(
        [*argv, "--host", host, "--port", str(port)],
        env=local_env(None, **_env(tmp_path, **env)),
        logs=tmp_path / "http-server",
    )
    try:
        server.wait_http(f"{url}/healthz")
        yield url, server
    finally:
        server.stop()


@contextmanager
def _http_server(tmp_path: Path, *, host: str = "127.0.0.1", **env: str) -> Iterator[str]:
    with _http_process(tmp_path, host=host, **env) as (url, _):
        yield url


async def test_http_needs_the_bearer_token_and_then_serves_both_eras(tmp_path: Path) -> None:
    token = "a-long-random-http-token-for-this-test"
    with _http_server(tmp_path, KARTRA_MCP_HTTP_TOKEN=token) as url:
        async with httpx2.AsyncClient() as raw:
            missing = await raw.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            wrong = await raw.post(f"{url}/mcp", headers={"Authorization": "Bearer nope"}, json={})
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        for mode in ("legacy", "auto"):
            person = Person("accept")
            with anyio.fail_after(60):
                async with (
                    httpx2.AsyncClient(
                        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30)
                    ) as http,
                    Client(
                        streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, elicitation_callback=person
                    ) as client,
                ):
                    names = {t.name for t in (await client.list_tools()).tools}
                    tags = await client.call_tool("retrieve-account-tags", {})
                    removal = await client.call_tool(
                        "unassign-tag", {"email": "henry.jones.1@example.com", "tag_name": "Customer"}
                    )
            assert "refund-transaction" in names
            assert not tags.is_error
            assert not removal.is_error, removal.content
            assert len(person.asked) == 1  # asked in person, in this era too


def test_http_beyond_loopback_without_a_token_does_not_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox", "--transport", "http", "--host", "0.0.0.0"],
        env={**os.environ, **_env(tmp_path)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"KARTRA_MCP_HTTP_TOKEN" in result.stderr


@pytest.mark.parametrize("flag", [None, "--sandbox"])
def test_stdout_carries_nothing_but_the_protocol(tmp_path: Path, flag: str | None) -> None:
    """Logs go to stderr: a stdio server that has not been spoken to writes nothing to stdout."""
    args = [sys.executable, "-m", "kartra_mcp", "serve", *([flag] if flag else [])]
    env = {**os.environ, **_env(tmp_path, KARTRA_MCP_LOG_LEVEL="DEBUG")}
    result = subprocess.run(args, env=env, input=b"", capture_output=True, timeout=60)
    assert result.stdout == b""
    if flag is None:
        assert result.returncode == 2
        assert b"--sandbox" in result.stderr and b"MEMBRANE_TOKEN" in result.stderr
    else:
        assert b"embedded sandbox" in result.stderr


async def test_a_server_on_any_loopback_address_refuses_foreign_host_headers(tmp_path: Path) -> None:
    """DNS rebinding: a web page must not reach a local server by pointing its own name at loopback."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with _http_server(tmp_path, host="127.0.0.2") as url:
        async with httpx2.AsyncClient(trust_env=False) as http:
            foreign = await http.post(f"{url}/mcp", json=body, headers={**headers, "Host": "evil.example"})
            local = await http.post(f"{url}/mcp", json=body, headers=headers)
    assert foreign.status_code == 421
    assert local.status_code == 200


async def test_serve_with_membrane_auth_acts_for_each_token_s_tenant_of_a_standalone_team_sandbox(
    tmp_path: Path,
) -> None:
    membrane_port, mcp_port = free_port(), free_port()
    membrane = f"http://127.0.0.1:{membrane_port}"
    argv = [sys.executable, "-m", "kartra_mcp"]
    sandbox = Server(
        [*argv, "sandbox", "--tenants", "alice,bob", "--port", str(membrane_port), "--leads", "20"],
        env=local_env(PYTHONUNBUFFERED="1"),
        logs=tmp_path / "sandbox",
    )

    def printed() -> dict[str, str]:
        lines = sandbox.output().splitlines()
        return dict(line.removeprefix("token for ").split(": ", 1) for line in lines if line.startswith("token for "))

    def posts(token: str) -> int:
        seen = httpx2.get(
            f"{membrane}/_sandbox/requests", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        ).json()["requests"]
        return sum(1 for r in seen if r["method"] == "POST")

    try:
        wait_until(lambda: sandbox.alive() and len(printed()) == 2, timeout=60, what=sandbox.explain())
        tokens = printed()
        server = Server(
            [*argv, "serve", "--transport", "http", "--auth", "membrane", "--port", str(mcp_port)],
            env=local_env(None, **_env(tmp_path, MEMBRANE_API_URL=membrane)),
            logs=tmp_path / "hosted",
        )
        try:
            server.wait_http(f"http://127.0.0.1:{mcp_port}/healthz")
            url = f"http://127.0.0.1:{mcp_port}/mcp"
            async with httpx2.AsyncClient(trust_env=False) as raw:
                refused = await raw.post(url, json={}, headers={"Authorization": "Bearer forged"})
            assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
            for who, other in (("alice", "bob"), ("bob", "alice")):
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                before = posts(tokens[other])
                async with (
                    httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30), trust_env=False) as http,
                    Client(streamable_http_client(url, http_client=http), mode="auto") as client,
                ):
                    found = await client.call_tool("get-lead", {"email": "nobody@example.com"})
                assert found.is_error  # Kartra's answer: no such lead in this tenant's account
                assert posts(tokens[who]) >= 1 and posts(tokens[other]) == before
        finally:
            server.stop()
    finally:
        sandbox.stop()


def test_membrane_auth_over_stdio_does_not_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kartra_mcp", "serve", "--auth", "membrane"],
        env={**os.environ, **_env(tmp_path)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"--transport http" in result.stderr


async def test_an_http_server_told_to_stop_with_a_2025_session_open_stops_cleanly_without_waiting_for_it(
    tmp_path: Path,
) -> None:
    """The session's standalone stream never ends by itself: it must not hold the shutdown."""
    with _http_process(tmp_path, KARTRA_MCP_LOG_LEVEL="INFO") as (url, server):
        with anyio.fail_after(60):
            async with (
                httpx2.AsyncClient(timeout=httpx2.Timeout(30), trust_env=False) as http,
                Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as client,
            ):
                await client.list_tools()
                server.process.send_signal(signal.SIGINT)
                while server.process.poll() is None:
                    await anyio.sleep(0.05)
        log = server.stderr_path.read_text()
    assert server.process.returncode == 130, server.explain()  # stopped by Ctrl-C, as a shell reports it
    assert "Application shutdown complete" in log
    assert "Waiting for connections to close" not in log
    assert "Traceback" not in log, log
