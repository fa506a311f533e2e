"""Channel 4: the approval page, opened in the person's own browser (a stdio server on their machine).

The page is served on loopback; Python's `webbrowser` opens it, so `BROWSER` chooses the program.
The call waits for the answer with progress notifications. The link and its secret go to the
browser only: never into the tool result.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable

import anyio

from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.wait import Progress, wait_for_answer
from kartra_mcp.tools.call import Answer, ConfirmationRequest, Unavailable

logger = logging.getLogger(__name__)

Opener = Callable[[str], bool]


_OPEN = "import sys, webbrowser; sys.exit(0 if webbrowser.open(sys.argv[1], new=2) else 3)"


def open_in_browser(url: str) -> bool:
    """Open a page with the person's browser, chosen by `webbrowser` (`BROWSER` first); False when there is none.

    `webbrowser` runs in a child whose stdout is stderr: a browser program inherits its opener's stdout, and
    a stdio server's stdout is the MCP protocol, which one stray line from a browser would break.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN, url],
            stdin=subprocess.DEVNULL,
            stdout=2,  # the process's stderr, whatever sys.stderr has become
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return True  # the browser is still starting, in the foreground of its opener: it is open
    except OSError:
        return False
    return done.returncode == 0


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
        approval, secret = await approvals.open(request, "browser", on_answer="wait")
        opened = await anyio.to_thread.run_sync(self._opener, approvals.link(approval, secret))
        if not opened:
            logger.warning("no browser could be opened for the approval page; set BROWSER to a browser program")
            await approvals.expire(approval, "browser")
            return Unavailable()
        return await wait_for_answer(approvals, approval, timeout=self._timeout, via="browser", progress=self._progress)
