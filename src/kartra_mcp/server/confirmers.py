"""Asking the person, in each protocol era.

- 2025-11-25 and earlier: the server pushes `elicitation/create` while the call waits.
- 2026-07-28: the call returns `InputRequiredResult` with the question; the client asks the person
  and retries the call with the answer and the confirmation id echoed back as `requestState`.

A client that declared no form elicitation, or a connection that cannot carry a server request,
cannot ask: the executor then falls back to confirmation ids or refuses, as the policy says.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp.types import (
    CallToolRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from kartra_mcp.tools.executor import (
    Accepted,
    Answer,
    ConfirmationRequest,
    Declined,
    Deferred,
    Unavailable,
)
from kartra_mcp.tools.spec import Risk

logger = logging.getLogger(__name__)

ANSWER_KEY = "kartra-mcp/confirm"
FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "confirm": {
            "type": "boolean",
            "title": "Yes, do this",
            "description": "Tick to let it run. Leave it unticked, or decline, to stop: nothing is sent.",
            "default": False,
        }
    },
    "required": ["confirm"],
}


def question(request: ConfirmationRequest) -> str:
    """What the person reads: the preview, and what is at stake."""
    preview = request.preview.text()
    # A preview that already says it cannot be undone is not repeated.
    final = "." if "cannot be undone" in preview.lower() else " and cannot be undone."
    stakes = {
        Risk.CRITICAL: f"This moves money or removes paid access{final}",
        Risk.DESTRUCTIVE: "This removes something from the Kartra account.",
    }.get(request.risk, "This changes the Kartra account.")
    return (
        f"An AI assistant wants to run {request.tool} on your Kartra account.\n\n{preview}\n\n"
        f"{stakes} Confirm only if you want this done."
    )


def can_elicit(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client said it can show a form to the person (an empty capability means form)."""
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    if elicitation is None:
        return False
    return elicitation.form is not None or elicitation.url is None


def _verdict(result: ElicitResult, echoed_id: str | None) -> Answer:
    if result.action != "accept":
        return Declined("cancel" if result.action == "cancel" else "decline", echoed_id)
    if (result.content or {}).get("confirm") is not True:
        return Declined("decline", echoed_id)
    return Accepted("elicitation", echoed_id)


class PushConfirmer:
    """2025-11-25 and earlier: ask with `elicitation/create` and wait for the answer."""

    def __init__(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self._ctx = ctx

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        ctx = self._ctx
        if not can_elicit(ctx) or not ctx.session.can_send_request:
            return Unavailable()
        try:
            result = await ctx.session.elicit_form(question(request), FORM_SCHEMA, related_request_id=ctx.request_id)
        except NoBackChannelError:
            return Unavailable()
        except MCPError as exc:
            # The client failed to ask; treat it as no answer, so nothing runs.
            logger.warning("the client could not show the confirmation (%s); nothing was sent", exc.error.message)
            return Declined("cancel")
        return _verdict(result, None)


class RoundTripConfirmer:
    """2026-07-28: the first round defers the question to the client; the retry carries the answer."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> None:
        self._ctx = ctx
        self._answer = (params.input_responses or {}).get(ANSWER_KEY)
        self._state = params.request_state

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        if not can_elicit(self._ctx):
            return Unavailable()
        if not isinstance(self._answer, ElicitResult) or not self._state:
            return Deferred()
        return _verdict(self._answer, self._state)


def confirmer_for(
    ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
) -> PushConfirmer | RoundTripConfirmer:
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return RoundTripConfirmer(ctx, params)
    return PushConfirmer(ctx)


def input_required(request: ConfirmationRequest) -> InputRequiredResult:
    """The 2026-07-28 answer that asks the client to put the question to the person."""
    ask = ElicitRequest(params=ElicitRequestFormParams(message=question(request), requested_schema=FORM_SCHEMA))
    return InputRequiredResult(input_requests={ANSWER_KEY: ask}, request_state=request.confirmation_id)
