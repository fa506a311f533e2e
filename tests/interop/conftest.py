"""Fixtures for driving Node.js clients against kartra-mcp: the runtime, the locked npm project, subprocesses."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.node import NodeRuntime, find_node, no_node_reason
from tests.processes import StandaloneSandbox, run, standalone_sandbox, without_private

JS_DIR = Path(__file__).parent / "js"
# Written into node_modules after a successful `npm ci`: what was installed, with which runtime.
STAMP = JS_DIR / "node_modules" / ".kartra-mcp-interop-stamp"

# The environment as the test run started, before tests/conftest.py's clean_environ strips proxies:
# npm may need them to reach its registry. Membrane and kartra-mcp settings are never passed on.
_STARTING_ENVIRON = dict(os.environ)


@pytest.fixture(scope="session")
def node_runtime() -> NodeRuntime:
    runtime = find_node()
    if runtime is None:
        pytest.skip(no_node_reason())
    return runtime


def _stamp(node: NodeRuntime) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((JS_DIR / name).read_bytes())
    return f"{digest.hexdigest()} node {node.version}\n"


@pytest.fixture(scope="session")
def js_project(node_runtime: NodeRuntime) -> Path:
    """tests/interop/js with its locked dependencies installed: `npm ci` once, skipped while nothing changed.

    `npm ci` installs exactly package-lock.json, without running install scripts, preferring npm's
    cache (~/.npm, or npm_config_cache) to the registry: cache that directory in CI, keyed on the
    lockfile. An unreachable registry with a cold cache fails here, with npm's own explanation.
    """
    wanted = _stamp(node_runtime)
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return JS_DIR
    env = node_runtime.env(without_private(_STARTING_ENVIRON))
    env.update(npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    done = run(
        [*node_runtime.npm, "ci", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"],
        env=env,
        cwd=JS_DIR,
        timeout=900,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in {JS_DIR} with {node_runtime.describe()}:\n{done.explain()}")
    STAMP.write_text(wanted)
    return JS_DIR


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[StandaloneSandbox]:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        yield sandbox
