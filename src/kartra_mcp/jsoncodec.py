"""JSON on the per-call path: orjson where it can, the standard library where it cannot.

Every tool call decodes Membrane's answer and writes the result's text; with the standard library
those two were a fifth of the pipeline's own time. orjson does each in a fraction; whatever
it refuses or would read differently (integers past 64 bits, lone surrogates, text that is not UTF-8)
goes to `json` as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # keys that are numbers or booleans become text, as `json` makes them
# orjson reads an integer past 64 bits as a float, losing digits; 19 digits in a row may be one. Found
# by mapping every digit to 0 and looking for nineteen of them: a regular expression took longer than
# parsing the whole answer.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"0" * 9)
_LONG_NUMBER = b"0" * 19


def compact(data: Any) -> str:
    """`data` as compact JSON text, non-ASCII kept, anything else by `str` (as `json.dumps` with those options)."""
    try:
        return orjson.dumps(data, default=str, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def loads(raw: bytes) -> Any:
    """The value of JSON bytes; raises `ValueError` when they are not JSON (as `json.loads`)."""
    if not orjson_reads_exactly(raw):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def orjson_reads_exactly(raw: bytes) -> bool:
    """Whether orjson reads `raw` as `json` would: no run of digits that may be an integer past 64 bits."""
    return _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO)


class Kept:
    """A JSON value kept as bytes and read back as new objects on every `read`, with what decides the
    reader (see `loads`) worked out once."""

    __slots__ = ("_raw", "_read")

    def __init__(self, data: Any) -> None:
        text = compact(data)
        self._raw: bytes | str = text
        self._read: Callable[[bytes | str], Any] = json.loads
        with suppress(UnicodeEncodeError):  # a lone surrogate has no UTF-8: such text stays text, read by `json`
            raw = text.encode()
            self._raw = raw
            if orjson_reads_exactly(raw):
                with suppress(orjson.JSONDecodeError):
                    orjson.loads(raw)
                    self._read = orjson.loads

    def read(self) -> Any:
        return self._read(self._raw)
