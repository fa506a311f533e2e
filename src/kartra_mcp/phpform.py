"""Kartra's wire format: form-encoded bodies in PHP bracket notation.

Kartra's API is one POST endpoint whose body PHP builds with `http_build_query`:
`lead[email]=a@b.c&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP`. `encode` turns nested
JSON-like values into that; `decode` turns it back into nested dicts of strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def encode_pairs(value: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten a nested mapping into PHP bracket `(key, value)` pairs, in order."""
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        _flatten(str(key), item, pairs)
    return pairs


def encode(value: Mapping[str, Any]) -> str:
    """Encode a nested mapping as an `application/x-www-form-urlencoded` PHP bracket body."""
    return urlencode(encode_pairs(value))


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, _scalar(value)))


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def decode(body: str | bytes) -> dict[str, Any]:
    """Parse a PHP bracket form body into nested dicts; leaves are strings.

    `a[]=x&a[]=y` numbers the items as PHP does (`{"a": {"0": "x", "1": "y"}}`); use `as_list`
    to read such a container in order.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return decode_pairs(parse_qsl(text, keep_blank_values=True))


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build the nested structure from already-split `(key, value)` pairs."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        segments = [head, *_SEGMENT.findall("[" + rest)] if rest else [head]
        node = root
        for position, segment in enumerate(segments):
            last = position == len(segments) - 1
            key = str(sum(1 for _ in node)) if segment == "" else segment
            if last:
                node[key] = value
                break
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
    return root


def as_list(container: Any) -> list[Any]:
    """Read a decoded container (`{"0": ..., "1": ...}`, a list, or one value) as an ordered list."""
    if container is None:
        return []
    if isinstance(container, list):
        return container
    if isinstance(container, dict):
        numbered = [(int(k), v) for k, v in container.items() if k.isdigit()]
        if len(numbered) == len(container):
            return [v for _, v in sorted(numbered)]
        return [container]
    return [container]
