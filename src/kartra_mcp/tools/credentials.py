"""Kartra's own credential fields, found at any depth and in any spelling, so none passes through the assistant.

Membrane adds `app_id`, `api_key` and `api_password` itself. A call that carries one (as `API_KEY`,
`lead[api_password]`, `actions[0][api_key]`, in full-width letters...) is refused, and what is
recorded of it has the value removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from kartra_mcp.errors import ArgumentProblem, InvalidArgumentsError
from kartra_mcp.tools.limits import MAX_DEPTH
from kartra_mcp.tools.spec import ToolSpec

REDACTED = "[redacted]"
_CREDENTIALS = frozenset({"apikey", "apipassword", "appid"})
_PART = re.compile(r"[^\[\]]+")


# Calls repeat the same few field names; normalizing each one again on every call cost more than the rest
# of the check.
@lru_cache(maxsize=4096)
def is_credential(key: str) -> bool:
    """Whether a field name, or any bracketed part of it, names one of Kartra's credentials."""
    folded = unicodedata.normalize("NFKC", key).casefold()
    return any("".join(c for c in part if c.isalnum()) in _CREDENTIALS for part in _PART.findall(folded))


def credential_paths(value: Any, where: str = "") -> list[str]:
    """Where credential fields are in `value` (objects, lists and form strings), without recursion."""
    found: list[str] = []
    pending: list[tuple[Any, str]] = [(value, where)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, Mapping):
            for key, inner in item.items():
                inner_path = f"{path}.{key}" if path else str(key)
                if is_credential(str(key)):
                    found.append(inner_path)
                else:
                    pending.append((inner, inner_path))
        elif isinstance(item, list | tuple):
            pending.extend((inner, f"{path}[{n}]") for n, inner in enumerate(item))
        elif isinstance(item, str) and "=" in item and _names_credential(item):
            found.append(path or "(text)")
    return sorted(found)


def without_credentials(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every credential's value replaced, for what is recorded of a refused call."""
    if depth > MAX_DEPTH and isinstance(value, Mapping | list | tuple):
        return f"{REDACTED}: nested too deep to check"
    if isinstance(value, Mapping):
        return {k: REDACTED if is_credential(str(k)) else without_credentials(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_credentials(v, depth + 1) for v in value]
    if isinstance(value, str) and "=" in value and _names_credential(value):
        return f"{REDACTED}: text that names a Kartra credential"
    return value


def _names_credential(text: str) -> bool:
    """Whether a form-encoded string holds a credential field, by the raw names Kartra would decode."""
    return any(is_credential(key) for key, _ in parse_qsl(text, keep_blank_values=True))


def refuse_credentials(spec: ToolSpec, arguments: Mapping[str, Any], audit: Callable[..., object]) -> None:
    """Refuse an action call whose input carries a Kartra credential, recording it without the value."""
    found = credential_paths(arguments)
    if not found:
        return
    problems = [
        ArgumentProblem(path, "is a Kartra credential: remove it; Membrane adds Kartra's credentials itself")
        for path in found
    ]
    error = InvalidArgumentsError(spec.name, problems)
    audit(spec.name, spec.action_key, without_credentials(arguments), spec.risk, "deny", None, "refused", str(error))
    raise error
