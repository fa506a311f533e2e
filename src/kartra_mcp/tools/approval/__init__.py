"""Approval channels: the ways a person can say yes to a call, behind one interface.

The pipeline asks a `Confirmer` "confirm this preview" and gets yes (`Accepted`), no (`Declined`),
pending (`Pending`, `Deferred`) or unavailable. Each channel is one module; `FirstAvailable` tries
them in order. Channels that need MCP (form and URL elicitation, MCP Apps) live in `server/`. The
page itself (`approval.page`, Starlette) is imported only where it is served.
"""

from kartra_mcp.tools.approval.browser import BrowserChannel, open_in_browser
from kartra_mcp.tools.approval.inbox import CHECK_TOOL, InboxChannel, pending_result
from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.store import Approval, ApprovalStore, MemoryApprovalStore
from kartra_mcp.tools.approval.token import CONFIRM_TOOL, TokenChannel
from kartra_mcp.tools.approval.wait import Progress, wait_for_answer
from kartra_mcp.tools.call import Answer, ConfirmationRequest, Confirmer, Unavailable


class FirstAvailable:
    """Asks each channel in turn; the first that can reach a person answers."""

    def __init__(self, *channels: Confirmer) -> None:
        self.channels = channels

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        for channel in self.channels:
            answer = await channel.confirm(request)
            if not isinstance(answer, Unavailable):
                return answer
        return Unavailable()


__all__ = [
    "CHECK_TOOL",
    "CONFIRM_TOOL",
    "Approval",
    "ApprovalStore",
    "Approvals",
    "BrowserChannel",
    "FirstAvailable",
    "InboxChannel",
    "MemoryApprovalStore",
    "Progress",
    "TokenChannel",
    "open_in_browser",
    "pending_result",
    "wait_for_answer",
]
