"""Progress of slow work (paging, waiting to retry), told to whoever is waiting for it.

The code that waits calls `report(message)`; the server sets, for the length of one request, a
reporter that turns it into an MCP progress notification when the client asked for progress.
Outside a request nothing is listening and `report` does nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

Reporter = Callable[[str], Awaitable[None]]

_current: ContextVar[Reporter | None] = ContextVar("kartra_mcp_progress", default=None)


async def report(message: str) -> None:
    """Tell the waiting client, if any, what is happening now."""
    reporter = _current.get()
    if reporter is not None:
        await reporter(message)


@asynccontextmanager
async def reporting_to(reporter: Reporter) -> AsyncIterator[None]:
    """Within the block, `report` goes to `reporter`."""
    token = _current.set(reporter)
    try:
        yield
    finally:
        _current.reset(token)
