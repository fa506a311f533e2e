"""One INFO line per served tool call: the tool, its class, the policy's decision, the outcome and
how long it took. Never the arguments: they are the person's data, and may hold what a log must not.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
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


class logged:  # lower case: it is used as a function, `with logged(tool) as record`
    """Log one line when the block ends; set the record's `result` inside it.

    A class rather than a generator, and the line is only put together when INFO is logged: it
    wraps every tool call.
    """

    def __init__(self, tool: str) -> None:
        self._outline = Outline(tool)
        self._record = CallRecord()
        self._token: Token[Outline | None] | None = None
        self._started = 0.0

    def __enter__(self) -> CallRecord:
        self._token = _CURRENT.set(self._outline)
        self._started = time.perf_counter()
        return self._record

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
        if not logger.isEnabledFor(logging.INFO):
            return
        outline, record = self._outline, self._record
        logger.info(
            "%s class=%s decision=%s outcome=%s %.0f ms",
            outline.tool,
            outline.risk,
            outline.decision,
            outline.outcome or record.outcome or _outcome(record.result),
            (time.perf_counter() - self._started) * 1000,
        )
