"""The light commands load only what they need: run as real processes, their imports read from `-X importtime`.

`--help`, `--version`, `audit` and `tools --json` from the catalog cache must not pay for the MCP
SDK (most of a start), the sandbox, or the web server stack; nor for jsonschema (the cache records
which schemas passed the meta-schema), PyJWT (a bearer token signs nothing) or pydantic-settings
(config.py reads the environment itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kartra_mcp.tools.audit import AuditLog
from tests.processes import local_env, run, standalone_sandbox

HEAVY = ("mcp", "mcp_types", "kartra_mcp.sandbox", "uvicorn", "starlette", "jsonschema", "jwt", "pydantic_settings")


def _imported(argv: list[str], env: dict[str, str]) -> tuple[set[str], str]:
    done = run([sys.executable, "-X", "importtime", "-m", "kartra_mcp", *argv], env=env, timeout=120)
    assert done.returncode == 0, done.explain()
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return modules, done.stdout


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["audit"], ["audit", "--json"]])
@pytest.mark.parametrize("log", ["no log yet", "a log"])
def test_help_version_and_audit_import_neither_the_sdk_nor_the_sandbox_nor_asyncio(
    tmp_path: Path, argv: list[str], log: str
) -> None:
    path = tmp_path / "audit.sqlite3"
    if log == "a log":
        AuditLog(path).close()
    env = local_env(KARTRA_MCP_AUDIT_DB=str(path))

    modules, _ = _imported(argv, env)

    assert "kartra_mcp.server.cli" in modules
    assert _heavy(modules) == []
    assert "asyncio" not in modules  # nothing here runs an event loop


def test_tools_from_the_cache_imports_neither_the_sdk_nor_the_sandbox_nor_a_schema_checker(tmp_path: Path) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        env = sandbox.client_env(tmp_path)
        _imported(["tools", "--json"], env)  # fills the catalog cache

        modules, listed = _imported(["tools", "--json"], env)

    assert '"get-lead"' in listed
    assert _heavy(modules) == []
