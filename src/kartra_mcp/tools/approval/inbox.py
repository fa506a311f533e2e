"""Channel 5: the approval inbox of an HTTP deployment, behind the approver credential.

The call returns at once with a pending id; a person with KARTRA_MCP_APPROVER_TOKEN answers at
`/approvals`, and the approved call runs then. An optional webhook hears of each pending call,
with the preview and the inbox link (which approves nothing without the approver credential).
"""

from __future__ import annotations

import logging
import time

import httpx2

from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.store import Approval
from kartra_mcp.tools.call import Answer, CallResult, ChannelName, ConfirmationRequest, Pending, Unavailable

logger = logging.getLogger(__name__)

CHECK_TOOL = "check-approval"


def pending_result(approval: Approval, where: str) -> CallResult:
    """What the model gets for a call that waits for a person elsewhere: nothing that can approve it."""
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(approval.expires_at))
    text = (
        "WAITING FOR A PERSON: nothing has been done yet.\n\n"
        f"{approval.preview_text}\n\n"
        f"A person is asked to approve or decline this {where}, until {until}. You cannot approve it. "
        f'To see whether they answered, call {CHECK_TOOL} with approval_id "{approval.id}".'
    )
    structured = {
        "status": "pending_approval",
        "approval_id": approval.id,
        "expires_at": until,
        "preview": approval.preview_text,
    }
    return CallResult(text, structured)


class InboxChannel:
    """Puts the call in the approval inbox and tells the webhook, if any."""

    def __init__(self, approvals: Approvals, *, webhook: str | None = None, timeout: float = 5.0) -> None:
        self._approvals = approvals
        self._webhook = webhook
        self._timeout = timeout

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        approvals = self._approvals
        if approvals.base_url is None or not approvals.needs_approver:
            return Unavailable()
        approval, _ = await approvals.open(request, "inbox", on_answer="run")
        if self._webhook:
            await self._notify(approval)
        channel: ChannelName = "inbox"
        return Pending(channel, pending_result(approval, f"in the approval inbox ({approvals.link(approval)})"))

    async def _notify(self, approval: Approval) -> None:
        payload = {
            "event": "approval_pending",
            "approval_id": approval.id,
            "tool": approval.tool,
            "risk": approval.risk.value,
            "preview": approval.preview_text,
            "facts": dict(approval.facts),
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(approval.expires_at)),
            "inbox": self._approvals.link(approval),
        }
        assert self._webhook is not None
        try:
            async with httpx2.AsyncClient(timeout=self._timeout) as http:
                response = await http.post(self._webhook, json=payload)
            if response.status_code >= 400:
                logger.warning("the approval webhook answered HTTP %d", response.status_code)
        except httpx2.HTTPError as exc:
            # The inbox still holds the call; a silent chat channel must not lose it.
            logger.warning("the approval webhook could not be reached (%s)", type(exc).__name__)
