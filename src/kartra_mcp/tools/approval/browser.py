"""Channel 4: the approval page, opened in the person's own browser (a stdio server on their machine).

The page is served on loopback; Python's `webbrowser` opens it, so `BROWSER` chooses the program.
The call waits for the answer with progress notifications. The link and its secret go to the
browser only: never into the tool result.
"""

from __future__ import annotations

import logging
import webbrowser
from collections.abc import Callable

import anyio

from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.wait import Progress, wait_for_answer
from kartra_mcp.tools.call import Answer, ConfirmationRequest, Unavailable

logger = logging.getLogger(__name__)

Opener = Callable[[str], bool]


def open_in_browser(url: str) -> bool:
    """Open a page with the person's browser (`BROWSER` first, as `webbrowser` does); False when there is none."""
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


class BrowserChannel:
    """Opens the approval page in the person's browser and waits for Approve or Decline."""

    def __init__(
        self,
        approvals: Approvals,
        *,
        opener: Opener = open_in_browser,
        timeout: float = 120.0,
        progress: Progress | None = None,
    ) -> None:
        self._approvals = approvals
        self._opener = opener
        self._timeout = timeout
        self._progress = progress

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        approvals = self._approvals
        if approvals.base_url is None or approvals.needs_approver:
            return Unavailable()
        approval, secret = approvals.open(request, "browser", on_answer="wait")
        opened = await anyio.to_thread.run_sync(self._opener, approvals.link(approval, secret))
        if not opened:
            logger.warning("no browser could be opened for the approval page; set BROWSER to a browser program")
            approvals.expire(approval, "browser")
            return Unavailable()
        return await wait_for_answer(approvals, approval, timeout=self._timeout, via="browser", progress=self._progress)
