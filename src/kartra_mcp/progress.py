"""Progress of slow work (paging, waiting to retry), told to whoever is waiting for it.

The code that waits calls `report(message)`; the server sets, for the length of one request, a
reporter that turns it into an MCP progress notification when the client asked for progress.
Outside a request nothing is listening and `report` does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType

Reporter = Callable[[str], Awaitable[None]]

_current: ContextVar[Reporter | None] = ContextVar("kartra_mcp_progress", default=None)


async def report(message: str) -> None:
    """Tell the waiting client, if any, what is happening now."""
    reporter = _current.get()
    if reporter is not None:
        await reporter(message)


class reporting_to:  # lower case: it is used as a function, `async with reporting_to(...)`
    """Within the block, `report` goes to `reporter`.

    A class rather than a generator: it wraps every tool call, and a generator-based context manager
    costs several times as much to enter and leave.
    """

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._token: Token[Reporter | None] | None = None

    async def __aenter__(self) -> None:
        self._token = _current.set(self._reporter)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
