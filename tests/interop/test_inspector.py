"""The MCP Inspector's CLI against `kartra-mcp serve --sandbox`, over stdio and over streamable HTTP.

The Inspector is run as `npx -y @modelcontextprotocol/inspector@2.12.0 --cli ...` from tests/interop/js,
whose package-lock.json pins it and everything under it, so npx runs the locked copy without the
registry. Its catalog, client config and OAuth store go to the test's temporary directory.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from kartra_mcp.sandbox.actions import CATALOG
from tests.interop.node import NodeRuntime
from tests.processes import Finished, Server, free_port, local_env, run

pytestmark = pytest.mark.interop

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


@dataclass(frozen=True)
class Inspector:
    node: NodeRuntime
    js_project: Path
    home: Path

    def __call__(self, *args: str, target: Sequence[str] = ()) -> Finished:
        """`inspector --cli ARGS TARGET`: options first, then the server (a URL, or `-- command...`)."""
        env = local_env(
            self.node.bin_dir,
            MCP_STORAGE_DIR=str(self.home / "storage"),
            MCP_INSPECTOR_OAUTH_STATE_PATH=str(self.home / "oauth-state.json"),
            MCP_CATALOG_PATH=str(self.home / "mcp.json"),
            MCP_CLIENT_CONFIG_PATH=str(self.home / "client.json"),
        )
        argv = [*self.node.npx, "-y", INSPECTOR, "--cli", *args, *target]
        return run(argv, env=env, cwd=self.js_project, timeout=120)

    def result(self, *args: str, target: Sequence[str]) -> Any:
        """The `result` of a call that must succeed (exit 0, one JSON object on stdout)."""
        done = self(*args, "--format", "json", "-q", target=target)
        assert done.returncode == 0, f"{self.node.describe()}\n{done.explain()}"
        return json.loads(done.stdout)["result"]


@pytest.fixture
def inspector(node_runtime: NodeRuntime, js_project: Path, tmp_path: Path) -> Inspector:
    return Inspector(node_runtime, js_project, tmp_path / "inspector")


def _stdio_server(tmp_path: Path) -> list[str]:
    """The target, after `--`: kartra-mcp on the embedded sandbox, its state kept in the test's directory."""
    return [
        "-e",
        f"KARTRA_MCP_AUDIT_DB={tmp_path / 'audit.sqlite3'}",
        "-e",
        f"KARTRA_MCP_CACHE_DIR={tmp_path / 'cache'}",
        "-e",
        "KARTRA_MCP_LOG_LEVEL=WARNING",
        "--",
        sys.executable,
        "-m",
        "kartra_mcp",
        "serve",
        "--sandbox",
    ]


def _assert_listed_with_annotations(tools: list[dict[str, Any]]) -> None:
    by_name = {tool["name"]: tool for tool in tools}
    assert {action.key for action in CATALOG} <= set(by_name), sorted(by_name)
    assert {"kartra-api-request", "check-approval"} <= set(by_name)
    assert "confirm-action" not in by_name  # only when a person chose confirmation ids in the policy
    for tool in tools:
        annotations = tool.get("annotations")
        assert isinstance(annotations, dict), tool
        assert all(isinstance(annotations.get(hint), bool) for hint in HINTS), tool
        assert tool["inputSchema"]["type"] == "object", tool
    assert by_name["get-lead"]["annotations"]["readOnlyHint"] is True
    assert by_name["assign-tag"]["annotations"]["readOnlyHint"] is False
    assert by_name["cancel-subscription"]["annotations"]["destructiveHint"] is True


def test_the_inspector_lists_every_tool_with_annotations_over_stdio(
    inspector: Inspector, mode: str, tmp_path: Path
) -> None:
    result = inspector.result("--method", "tools/list", "--protocol-era", mode, target=_stdio_server(tmp_path))

    _assert_listed_with_annotations(result["tools"])


def test_the_inspectors_strict_schema_check_finds_nothing_to_flag(inspector: Inspector, tmp_path: Path) -> None:
    done = inspector(
        "--method", "tools/list", "--strict", "--format", "json", "-q", target=_stdio_server(tmp_path)
    )  # fmt: skip

    assert done.returncode == 0, done.explain()
    envelope = json.loads(done.stdout)
    assert "schemaFindings" not in envelope, json.dumps(envelope.get("schemaFindings"), indent=1)[:4000]
    assert envelope["result"]["tools"]
    assert "Warning:" not in done.stderr and "Error:" not in done.stderr, done.explain()


def test_the_inspector_calls_get_lead_over_stdio_and_gets_the_lead(
    inspector: Inspector, mode: str, tmp_path: Path, samples: dict[str, Any]
) -> None:
    email = samples["lead"]["email"]

    result = inspector.result(
        "--method",
        "tools/call",
        "--tool-name",
        "get-lead",
        "--tool-args-json",
        json.dumps({"email": email}),
        "--protocol-era",
        mode,
        target=_stdio_server(tmp_path),
    )

    assert not result.get("isError"), result
    assert result["structuredContent"]["lead_details"]["email"] == email
    assert json.loads(result["content"][0]["text"])["lead_details"]["email"] == email


@dataclass(frozen=True)
class HttpServer:
    url: str
    token: str


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """`kartra-mcp serve --sandbox --transport http` on a free loopback port, behind a bearer token."""
    port, token = free_port(), secrets.token_urlsafe(32)
    server = Server(
        [sys.executable, "-m", "kartra_mcp", "serve", "--sandbox", "--transport", "http", "--port", str(port)],
        env=local_env(
            KARTRA_MCP_HTTP_TOKEN=token,
            KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"),
            KARTRA_MCP_CACHE_DIR=str(tmp_path / "cache"),
        ),
        logs=tmp_path / "http-server",
    )
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield HttpServer(url=f"http://127.0.0.1:{port}/mcp", token=token)
    finally:
        server.stop()


def test_the_inspector_lists_the_tools_over_http_with_the_bearer_token(
    inspector: Inspector, http_server: HttpServer, mode: str
) -> None:
    result = inspector.result(
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {http_server.token}",
        "--stored-auth-only",
        "--protocol-era",
        mode,
        "--method",
        "tools/list",
        target=[http_server.url],
    )

    _assert_listed_with_annotations(result["tools"])


def test_the_inspector_without_the_token_is_refused_over_http(inspector: Inspector, http_server: HttpServer) -> None:
    done = inspector(
        "--transport",
        "http",
        "--stored-auth-only",
        "--method",
        "tools/list",
        "--format",
        "json",
        "-q",
        target=[http_server.url],
    )

    assert done.returncode != 0, done.explain()
    envelope = next(line for line in reversed(done.stderr.splitlines()) if line.startswith("{"))
    error = json.loads(envelope)["error"]
    assert error["code"] == "auth_required", done.explain()
    assert "invalid_token" in error["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-token", "Basic dXNlcjpwYXNz"])
def test_a_request_without_the_right_token_gets_401(http_server: HttpServer, authorization: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }

    response = httpx2.post(http_server.url, json=initialize, headers=headers, timeout=10, trust_env=False)

    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "invalid_token"
