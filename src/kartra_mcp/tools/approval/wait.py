"""Waiting, with progress, for a person to answer an approval page; shared by the browser and URL channels."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from kartra_mcp.tools.approval.service import Approvals
from kartra_mcp.tools.approval.store import Approval
from kartra_mcp.tools.call import Accepted, Answer, ChannelName, Declined

# (progress, total, message): sent as MCP progress notifications while the call waits.
Progress = Callable[[float, float | None, str], Awaitable[None]]
PROGRESS_EVERY = 5.0


async def wait_for_answer(
    approvals: Approvals,
    approval: Approval,
    *,
    timeout: float,
    via: ChannelName,
    progress: Progress | None = None,
    where: str = "in their browser",
) -> Answer:
    """The person's answer; no answer within `timeout` (or before the approval expires) is a no."""
    started = approvals.now()
    limit = max(0.0, min(timeout, approval.expires_at - started))
    message = f"A person is being asked {where}; waiting up to {limit:.0f} s for their answer."
    with anyio.move_on_after(limit):
        while approval.state == "pending":
            if progress is not None:
                await progress(approvals.now() - started, limit, message)
            approval = await approvals.store.wait(approval, PROGRESS_EVERY)
    if approval.state == "pending":
        # Expired only if still pending: an answer that came at the last moment stands (the store settles once).
        await approvals.expire(approval, via)
        approval = await approvals.store.get(approval.id) or approval
    if approval.state == "approved":
        return Accepted(via, by=approval.answered_by)
    if approval.state == "declined":
        return Declined("decline", how=via, by=approval.answered_by)
    return Declined(
        "cancel", how=via, note=f"No answer came {where} within {limit:.0f} s, so the link no longer works."
    )
