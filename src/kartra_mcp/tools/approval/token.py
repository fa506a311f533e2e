"""Channel 6: confirmation ids redeemed through confirm-action, only when the policy chose them.

The model sees the id, so what keeps it from redeeming the id itself is the instruction and the
host: the reason this channel is never picked unless a person wrote `on_unconfirmable = "token"`.
"""

from __future__ import annotations

import time

from kartra_mcp.tools.call import Answer, CallResult, ConfirmationRequest, Pending
from kartra_mcp.tools.confirm import ConfirmationBook

CONFIRM_TOOL = "confirm-action"


class TokenChannel:
    """Issues a confirmation id for the call and returns the preview with it."""

    def __init__(self, book: ConfirmationBook) -> None:
        self._book = book

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        confirmation_id, expires_at = await self._book.issue(
            request.tool, request.arguments, request.connection, channel="token"
        )
        until = time.strftime("%H:%M:%S UTC", time.gmtime(expires_at))
        preview = request.preview.text()
        text = (
            "CONFIRMATION NEEDED: nothing has been done yet.\n\n"
            f"{preview}\n\n"
            "Show this preview to the person and ask whether to go ahead. Only if they clearly say yes, call "
            f'{CONFIRM_TOOL} with confirmation_id "{confirmation_id}" (valid once, until {until}). '
            "If they say no, or do not answer, do nothing."
        )
        structured = {
            "status": "confirmation_required",
            "confirmation_id": confirmation_id,
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)),
            "preview": preview,
            "facts": request.preview.facts,
        }
        return Pending("token", CallResult(text, structured, is_error=True))
