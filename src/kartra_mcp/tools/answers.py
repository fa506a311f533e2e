"""Judging what came back through the proxy, whatever route carried it.

Kartra answers every call with JSON. A success status with anything else (a cut-off body, an HTML
error page from something in between) is not an answer: for a read it is a failure that may be
asked again; for a write it means the request arrived and what it did is unknown.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kartra_mcp.errors import MembraneProtocolError
from kartra_mcp.membrane import RetryPolicy

_T = TypeVar("_T")
_SHOWN = 120


class GarbledAnswer(MembraneProtocolError):
    """A success status whose body is not JSON: retryable for a read, outcome unknown for a write."""


def garbled_answer(status: int, body: bytes) -> GarbledAnswer | None:
    """The problem with a proxied success answer that is not JSON, saying what came back; else None."""
    if status >= 400:
        return None
    if not body.strip():
        return GarbledAnswer(f"Kartra's side answered HTTP {status} with an empty body instead of JSON")
    try:
        json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        shown = json.dumps(text[:_SHOWN], ensure_ascii=False) + ("…" if len(text) > _SHOWN else "")
        return GarbledAnswer(
            f"Kartra's side answered HTTP {status} with {len(body)} bytes that are not JSON (it begins {shown})"
        )
    return None


async def resend_garbled(send: Callable[[], Awaitable[_T]], retry: RetryPolicy, *, retry_safe: bool) -> _T:
    """`send()`, sent again under `retry` while its answer is garbled, when `retry_safe` (a read).

    Other faults the client has already retried; only the judgement made here is retried here.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await send()
        except GarbledAnswer:
            if not retry_safe or attempt >= retry.attempts:
                raise
        await retry.sleep(retry.delay(attempt))
