"""Membrane's own JavaScript SDKs against the standalone sandbox (`python -m kartra_mcp sandbox`).

Two scripts in tests/interop/js, on the dependencies package-lock.json pins:
membrane_sdk_check.mjs drives @membranehq/sdk as a Membrane app would (connections, pages of actions,
an action with its schemas, runs by id and by key, the proxy with Kartra's form body, a write read
back); integration_app_sdk_check.mjs replays through @integration-app/sdk the requests of Membrane's
own MCP server (github.com/integration-app/mcp-server).
"""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from kartra_mcp.sandbox.actions import CATALOG
from tests.interop.node import NodeRuntime
from tests.processes import Finished, StandaloneSandbox, local_env, run

pytestmark = pytest.mark.interop


def _check(script: str, node: NodeRuntime, js_project: Path, sandbox: StandaloneSandbox) -> Finished:
    lead = sandbox.state()["samples"]["lead"]["email"]
    env = local_env(node.bin_dir, MEMBRANE_API_URI=sandbox.url, MEMBRANE_TOKEN=sandbox.token, LEAD_EMAIL=lead)
    done = run([str(node.node), script], env=env, cwd=js_project, timeout=120)
    assert done.returncode == 0, f"{node.describe()}\n{done.explain()}\n--- the sandbox\n{sandbox.server.explain()}"
    assert done.stdout.rstrip().endswith("ALL CHECKS PASSED"), done.explain()
    return done


def _requested(sandbox: StandaloneSandbox) -> list[str]:
    return [f"{r['method']} {r['path']}?{r['query']}" for r in sandbox.requests()]


def test_the_sandbox_prints_a_jwt_shaped_token_which_both_sdks_insist_on(standalone: StandaloneSandbox) -> None:
    claims = jwt.decode(standalone.token, options={"verify_signature": False})
    assert claims["id"]  # Membrane's MCP server also reads the tenant from the `id` claim


def test_the_membrane_sdk_pages_gets_runs_proxies_and_writes_through_the_sandbox(
    node_runtime: NodeRuntime, js_project: Path, standalone: StandaloneSandbox
) -> None:
    done = _check("membrane_sdk_check.mjs", node_runtime, js_project, standalone)
    lines = done.stdout.splitlines()
    lead = standalone.state()["samples"]["lead"]["email"]

    assert lines[0].startswith("@membranehq/sdk 0.28.3; node v")
    assert f"ACTIONS COUNT (paged, limit 7): {len(CATALOG)}" in lines
    assert f"ACTIONS COUNT (findAll): {len(CATALOG)}" in lines
    assert f"LEAD EMAIL: {lead}" in lines
    assert f"PROXY LEAD: {lead}" in lines
    assert any(line.startswith("TAG READ BACK: ") for line in lines)
    assert any(line.startswith("TAG REMOVED: ") for line in lines)
    assert "REFUSAL: type=bad_request key=not_found message=Action 'no-such-action' not found" in lines

    seen = _requested(standalone)
    pages = [r for r in seen if r.startswith("GET /actions?") and "limit=7" in r]
    assert len(pages) == -(-len(CATALOG) // 7), seen
    assert any(r.startswith("GET /actions?") and "limit=1000&cursor=0" in r for r in seen)
    assert "GET /action?integrationKey=kartra&key=get-lead" in seen
    assert any(r.startswith("POST /connections/") and "/proxy/?" in r for r in seen)
    assert any(r.startswith("POST /action/run?integrationKey=kartra&key=assign-tag&connectionId=") for r in seen)


def test_the_integration_app_sdk_replays_membranes_mcp_server_against_the_sandbox(
    node_runtime: NodeRuntime, js_project: Path, standalone: StandaloneSandbox
) -> None:
    done = _check("integration_app_sdk_check.mjs", node_runtime, js_project, standalone)
    lines = done.stdout.splitlines()
    lead = standalone.state()["samples"]["lead"]["email"]

    assert lines[0].startswith("@integration-app/sdk 1.9.0; node v")
    assert "CONNECTIONS: 1 (no cursor)" in lines
    assert f"ACTIONS: {len(CATALOG)}" in lines
    assert f"TOOLS: {len(CATALOG)}" in lines
    names = next(line for line in lines if line.startswith("TOOL NAMES: ")).split()[2:]
    assert sorted(names) == sorted(f"kartra_{action.key}" for action in CATALOG)
    assert "TOOL TITLE: Kartra: Get Lead" in lines
    assert f"LEAD EMAIL: {lead}" in lines

    seen = _requested(standalone)
    assert seen[0] == "GET /connections?"
    assert "POST /action-instance/run?autoCreate=true&integrationKey=kartra&parentKey=get-lead" in seen
