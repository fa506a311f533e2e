"""Package attributes imported on first use, so a command loads only the modules it needs.

`kartra-mcp --help`, `--version` and `audit` must answer without importing the MCP SDK (most of
a start), and a package's `__init__` re-exporting its modules would import them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name in `where` comes from the module named beside it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups find it directly
        return value

    return __getattr__
