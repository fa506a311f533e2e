"""Whether a tool schema is valid JSON Schema (draft 2020-12), remembered by its content.

Checking one schema against the meta-schema costs about a millisecond, which for a whole catalog is
most of a start that serves the cached one. The verdict depends only on the schema's content, so a
schema that passed is remembered by digest: in this process, and in the catalog cache (see
`tools.catalog`), so a warm start checks nothing and does not even import jsonschema. A schema that
failed is never remembered: it is checked, and refused, every time.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Iterable, Mapping
from typing import Any

# Bounded like the compiled validators: a long-lived hosted server sees many tenants' catalogs.
_LIMIT = 8192
_PASSED: set[str] = set()
_HEX = frozenset(string.hexdigits.lower())


def digest(schema: Mapping[str, Any]) -> str | None:
    """The schema's content digest; None for a schema that is not plain JSON (never remembered)."""
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """What the meta-schema says is wrong with `schema` (its first complaint), or None when it is valid."""
    key = digest(schema)
    if key is not None and key in _PASSED:
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc.message
    if key is not None:
        if len(_PASSED) >= _LIMIT:
            _PASSED.clear()
        _PASSED.add(key)
    return None


def vouch(digests: Iterable[object]) -> None:
    """Remember schemas found valid before (digests a catalog cache recorded); anything else is ignored."""
    for key in digests:
        if isinstance(key, str) and len(key) == 64 and set(key) <= _HEX and len(_PASSED) < _LIMIT:
            _PASSED.add(key)


def passed(schemas: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The digests of those of `schemas` known to be valid, sorted, for a cache to record."""
    found = {digest(schema) for schema in schemas if schema is not None}
    return sorted(key for key in found if key is not None and key in _PASSED)
