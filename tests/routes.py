"""The routes a run or a raw request can take to Membrane, for tests that must hold on each.

`act` is a deployment that serves `POST /act` (the client's default route); `legacy` one that does
not, so the client falls back to `POST /actions/{id}/run` and the connection proxy. Fault rules
name a run or a raw request on either route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kartra_mcp.sandbox import SandboxConfig

ROUTES = ("act", "legacy")


def sandbox_config(route: str, **settings: Any) -> SandboxConfig:
    """A sandbox that serves `/act` (`act`) or is without it (`legacy`)."""
    without = frozenset({"act"}) if route == "legacy" else frozenset()
    return SandboxConfig(without=without, **settings)


def run_rule(route: str, action_id: str = "*") -> str:
    """A fault route matching the run of one action (its id), or of any action, on `route`."""
    if route == "legacy":
        return f"POST /actions/{action_id}/run"
    return f"POST /act/action/{action_id}"


def raw_rule(route: str) -> str:
    """A fault route matching a raw request to Kartra on `route`."""
    return "POST /connections/*/proxy*" if route == "legacy" else "POST /act/api"


def carried_by(requests: Iterable[Mapping[str, str]]) -> set[str]:
    """The routes that carried the runs and raw requests among `requests` (the probe aside)."""
    found: set[str] = set()
    for r in requests:
        if r["path"] == "/act" and r.get("runs", "/act") != "/act":
            found.add("act")
        elif (r["path"].startswith("/actions/") and r["path"].endswith("/run")) or "/proxy" in r["path"]:
            found.add("legacy")
    return found


def ran(requests: Iterable[Mapping[str, str]], action_id: str) -> bool:
    """Whether a run of the action (by its id) reached the sandbox, on either route."""
    return any(
        r["path"] == f"/actions/{action_id}/run" or r.get("runs") == f"/act/action/{action_id}" for r in requests
    )
