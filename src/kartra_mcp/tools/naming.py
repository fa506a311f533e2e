"""Tool names from action keys.

A name is the action key itself whenever the key already follows the rules every client accepts:
letters, digits, `_`, `-` and `.` (SEP-986), starting with a letter or `_` (Gemini), and short
enough that a client's prefix (Claude Code's `mcp__<server>__`) still fits in 64 characters.
Otherwise it is shortened or cleaned deterministically, with a hash of the key appended, so the
same key always gets the same name and two keys never share one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection

MAX_LENGTH = 48
_VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_.-]+")


def tool_name(key: str, reserved: Collection[str] = ()) -> str:
    """The tool name for an action key; `reserved` names (our own tools) are never returned."""
    if _VALID.match(key) and len(key) <= MAX_LENGTH and key not in reserved:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    slug = _INVALID_RUN.sub("-", key).strip("-.") or "action"
    if not re.match(r"[A-Za-z_]", slug):
        slug = "a-" + slug
    return f"{slug[: MAX_LENGTH - len(digest) - 1].rstrip('-.')}-{digest}"
