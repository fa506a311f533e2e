"""Query parameters read as Membrane's published API bounds them, refused with its error body.

Membrane validates a query before it does anything: a `limit` outside its range, an `intent` over
200 characters or a boolean that is neither `true` nor `false` is a 400 `bad_request` naming the
parameter, and nothing else happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kartra_mcp.errors import MembraneRefusal


def integer(query: Mapping[str, str], name: str, low: int, high: int, default: int | None = None) -> int | None:
    """An integer parameter within `[low, high]`, or `default` when it is absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise MembraneRefusal(400, f"{name} must be an integer from {low} to {high}, not {raw!r}")
    return value


def text(query: Mapping[str, str], name: str, *, max_length: int, min_length: int = 0) -> str | None:
    raw = query.get(name)
    if raw is None:
        if min_length:
            raise MembraneRefusal(400, f"{name} is required")
        return None
    if not min_length <= len(raw) <= max_length:
        raise MembraneRefusal(400, f"{name} must be {min_length} to {max_length} characters, not {len(raw)}")
    return raw


def boolean(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise MembraneRefusal(400, f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def choice(query: Mapping[str, str], name: str, allowed: Iterable[str]) -> str | None:
    raw = query.get(name)
    options = tuple(allowed)
    if raw is not None and raw not in options:
        raise MembraneRefusal(400, f"{name} must be one of {', '.join(options)}, not {raw!r}")
    return raw
