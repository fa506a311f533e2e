"""The public surface of each package, and who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest

import kartra_mcp.membrane
import kartra_mcp.sandbox
import kartra_mcp.schemas
import kartra_mcp.server
import kartra_mcp.tools

PACKAGE = Path(kartra_mcp.__file__).parent

# What each part may import from kartra_mcp (besides itself). Dependencies point one way:
# server -> tools -> {membrane, schemas}; the sandbox stands beside them. `progress` is a leaf
# like `errors`: slow code reports into it, and the server connects it to the client. `jsoncodec`
# is a leaf too: JSON on the per-call path.
ALLOWED = {
    "membrane": {"config", "errors", "progress", "jsoncodec", "__init__"},
    "schemas": {"errors"},
    "sandbox": {"errors", "phpform", "schemas"},
    "tools": {"membrane", "schemas", "errors", "phpform", "config", "progress", "jsoncodec", "_lazy"},
    # Shared state for replicas: implementations of the interfaces tools/ defines.
    "state": {"tools", "config", "errors"},
    "server": {
        "state",
        "tools",
        "membrane",
        "schemas",
        "sandbox",
        "errors",
        "config",
        "phpform",
        "progress",
        "jsoncodec",
        "__init__",
        "_lazy",
    },
}


@pytest.mark.parametrize(
    "module",
    [kartra_mcp.membrane, kartra_mcp.sandbox, kartra_mcp.schemas, kartra_mcp.server, kartra_mcp.tools],
    ids=lambda m: m.__name__,
)
def test_every_package_declares_its_public_surface(module: ModuleType) -> None:
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    assert all(hasattr(module, name) for name in exported)


def _internal_imports(path: Path) -> set[str]:
    """The parts of kartra_mcp a file imports: `membrane`, `errors` ..., or `__init__` for the package itself."""
    parts = {p.stem for p in PACKAGE.iterdir()}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "kartra_mcp":
            found.update(a.name if a.name in parts else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.update(n.split(".")[1] for n in names if n.startswith("kartra_mcp."))
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_dependencies_point_one_way(part: str) -> None:
    for path in (PACKAGE / part).rglob("*.py"):
        foreign = _internal_imports(path) - ALLOWED[part] - {part}
        assert not foreign, f"{path.relative_to(PACKAGE)} imports {sorted(foreign)}"


DRIVERS = ("redis", "psycopg")


def test_the_redis_and_postgres_drivers_are_imported_only_by_the_modules_chosen_when_they_are_configured() -> None:
    # postgres_lock is imported by postgres_audit alone.
    chosen = {PACKAGE / "state" / n for n in ("redis_store.py", "postgres_audit.py", "postgres_lock.py")}
    for path in PACKAGE.rglob("*.py"):
        if path in chosen:
            continue
        for node in ast.parse(path.read_text()).body:  # module level: what importing the module loads
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] in DRIVERS], path


def test_only_the_server_speaks_mcp() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "server" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("mcp", "mcp_types")), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(("mcp", "mcp_types")) for a in node.names), path


MOCK = ".".join(("unittest", "mock"))  # spelled out in parts, so a plain search of tests/ finds no use of it


def test_no_test_mocks_our_code() -> None:
    """Tests drive the real code against the sandbox; ruff's import ban does not reach tests/, this does."""
    tests = Path(__file__).parent
    for path in tests.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
            )
            assert not any(n == MOCK or n.startswith(MOCK + ".") for n in names), path
            if isinstance(node, ast.ImportFrom) and node.module == "unittest":
                assert "mock" not in {a.name for a in node.names}, path
