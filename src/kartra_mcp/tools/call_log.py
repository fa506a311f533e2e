"""One INFO line per served tool call: the tool, its class, the policy's decision, the outcome and
how long it took. Never the arguments: they are the person's data, and may hold what a log must not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("kartra_mcp.calls")


class _Result(Protocol):
    @property
    def is_error(self) -> bool: ...
    @property
    def structured(self) -> dict[str, Any] | None: ...
    @property
    def awaiting(self) -> object: ...


@dataclass
class Outline:
    """What the pipeline learned about the call, as it went."""

    tool: str
    risk: str = "-"
    decision: str = "-"
    outcome: str | None = None


_CURRENT: ContextVar[Outline | None] = ContextVar("kartra_mcp_call_outline", default=None)


def note(*, tool: str, risk: str, decision: str, outcome: str | None = None) -> None:
    """Called by the pipeline where it knows the class and decision (and, for a call not sent, its outcome)."""
    outline = _CURRENT.get()
    if outline is None:
        return
    outline.tool, outline.risk, outline.decision = tool, risk, decision
    if outcome is not None:
        outline.outcome = outcome


def _outcome(result: _Result | None) -> str:
    if result is None:
        return "error"
    if result.awaiting is not None:
        return "awaiting_confirmation"
    if result.is_error:
        return "unknown" if (result.structured or {}).get("outcome_unknown") else "failed"
    return "success"


class CallRecord:
    """The call's result, or its outcome where there is no result to read it from."""

    def __init__(self) -> None:
        self.result: _Result | None = None
        self.outcome: str | None = None


@contextmanager
def logged(tool: str) -> Iterator[CallRecord]:
    """Log one line when the block ends; set the record's `result` inside it."""
    outline = Outline(tool)
    record = CallRecord()
    token = _CURRENT.set(outline)
    started = time.perf_counter()
    try:
        yield record
    finally:
        _CURRENT.reset(token)
        logger.info(
            "%s class=%s decision=%s outcome=%s %.0f ms",
            outline.tool,
            outline.risk,
            outline.decision,
            outline.outcome or record.outcome or _outcome(record.result),
            (time.perf_counter() - started) * 1000,
        )
