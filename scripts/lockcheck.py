"""Fail, saying what to do, when a lock file under requirements/ disagrees with pyproject.toml.

Usage: python scripts/lockcheck.py requirements/dev.txt [extra ...]
       python scripts/lockcheck.py requirements/build.txt --build-system

Every dependency pyproject.toml declares (with the given extras; or, with --build-system, what
building the project requires) must be pinned in the lock within its bounds, and every pin the lock
attributes to pyproject.toml must still be declared.
Offline and exact, so it never fails because an upstream released something new.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare virtual environment: pip carries the same library
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def problems(root: Path, lock: Path, extras: list[str]) -> list[str]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    project = pyproject["project"]
    if extras == ["--build-system"]:
        declared = [Requirement(r) for r in pyproject["build-system"]["requires"]]
        extras = []
    else:
        declared = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        declared += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins: dict[str, str] = {}
    direct: set[str] = set()
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = match.group(2)
            if "pyproject.toml" in line:
                direct.add(name)
    found = []
    wanted = {canonicalize_name(r.name) for r in declared}
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{requirement} is declared but not pinned")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(f"{requirement} is declared but {name}=={pins[name]} is pinned")
    found += [f"{name}=={pins[name]} is pinned for pyproject.toml, which no longer declares it" for name in sorted(direct - wanted)]
    return found


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    lock = Path(sys.argv[1])
    found = problems(root, lock, sys.argv[2:])
    if found:
        print(f"{lock} disagrees with pyproject.toml:", file=sys.stderr)
        for problem in found:
            print(f"  - {problem}", file=sys.stderr)
        print("Run scripts/lock and commit requirements/.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
