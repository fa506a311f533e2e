"""Asking the person, in each protocol era, through every channel the client and deployment allow.

In the order a call tries them:

1. form elicitation, when the client declares it: pushed as `elicitation/create` (2025-11-25) or
   returned as an input-required result (2026-07-28), retried with the answer;
2. MCP Apps (`server/apps.py`), when the client declares `io.modelcontextprotocol/ui`;
3. URL-mode elicitation, when the client declares `elicitation.url`: the client opens the approval
   page, and the call proceeds when the person answers there;
4. the approval page in the person's browser (stdio), and 5. the approval inbox (HTTP), both in
   `tools/approval/`.

The executor falls back to confirmation ids (6) only when the policy chose them, else refuses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp.types import (
    CallToolRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitRequestURLParams,
    ElicitResult,
    InputRequiredResult,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from kartra_mcp.server.apps import AppChannel
from kartra_mcp.tools.approval import (
    Approvals,
    BrowserChannel,
    InboxChannel,
    Progress,
    open_in_browser,
    wait_for_answer,
)
from kartra_mcp.tools.call import (
    Accepted,
    Answer,
    ConfirmationRequest,
    Confirmer,
    Declined,
    Deferred,
    Unavailable,
)
from kartra_mcp.tools.spec import Risk

logger = logging.getLogger(__name__)

ANSWER_KEY = "kartra-mcp/confirm"
URL_KEY = "kartra-mcp/approve-in-browser"
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


@dataclass
class Deployment:
    """What the server, not the client, offers for approvals: the pages, the browser, the inbox."""

    approvals: Approvals | None = None
    opener: Callable[[str], bool] = open_in_browser
    timeout: float = 120.0
    webhook: str | None = None
    # 2026-07-28 URL rounds: the confirmation id echoed back -> the approval it opened
    url_rounds: dict[str, str] = field(default_factory=dict)


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


def _elicitation(ctx: ServerRequestContext[Any, Any]) -> Any:
    capabilities = ctx.session.client_capabilities
    return capabilities.elicitation if capabilities else None


def can_elicit(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client said it can show a form to the person (an empty capability means form)."""
    elicitation = _elicitation(ctx)
    if elicitation is None:
        return False
    return elicitation.form is not None or elicitation.url is None


def can_open_url(ctx: ServerRequestContext[Any, Any]) -> bool:
    elicitation = _elicitation(ctx)
    return elicitation is not None and elicitation.url is not None


def _verdict(result: Any, echoed_id: str | None) -> Answer:
    """A client's answer; anything but a ticked yes - a malformed or empty answer included - is a no."""
    if not isinstance(result, ElicitResult):
        return Declined("cancel", echoed_id, note="The client's answer to the question was malformed.")
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
            # A person who never answers must not hold the call past the confirmation's own life.
            with anyio.fail_after(max(1.0, request.expires_at - time.time())):
                result = await ctx.session.elicit_form(
                    question(request), FORM_SCHEMA, related_request_id=ctx.request_id
                )
        except TimeoutError:
            return Declined("cancel", note="No answer came before the confirmation expired.")
        except NoBackChannelError:
            return Unavailable()
        except (MCPError, ValidationError) as exc:
            # The client failed to ask, or answered with something that is not an answer: nothing runs.
            logger.warning("the client's answer to the confirmation was unusable (%s); nothing was sent", exc)
            return Declined("cancel", note="The client could not show the question or answered it malformed.")
        return _verdict(result, None)


class RoundTripConfirmer:
    """2026-07-28: the first round defers the question to the client; the retry carries the answer."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> None:
        self._ctx = ctx
        self._responses = params.input_responses or {}
        self._state = params.request_state

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        if not can_elicit(self._ctx):
            return Unavailable()
        if not self._state or ANSWER_KEY not in self._responses:
            return Deferred()
        return _verdict(self._responses.get(ANSWER_KEY), self._state)

    def input_request(self, request: ConfirmationRequest) -> ElicitRequest:
        return ElicitRequest(params=ElicitRequestFormParams(message=question(request), requested_schema=FORM_SCHEMA))


def _url_message(request: ConfirmationRequest) -> str:
    return (
        f"An AI assistant wants to run {request.tool} on your Kartra account. Open the approval page to see "
        "exactly what it would do, and press Approve or Decline there."
    )


class UrlConfirmer:
    """URL-mode elicitation: the client opens the approval page; the call waits for the answer there."""

    def __init__(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: CallToolRequestParams,
        deployment: Deployment,
        progress: Progress | None,
    ) -> None:
        self._ctx = ctx
        self._params = params
        self._deployment = deployment
        self._progress = progress
        self._link: str | None = None

    def _approvals(self) -> Approvals | None:
        approvals = self._deployment.approvals
        if approvals is None or approvals.base_url is None or not can_open_url(self._ctx):
            return None
        return approvals

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        approvals = self._approvals()
        if approvals is None:
            return Unavailable()
        if self._ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return await self._round_trip(approvals, request)
        if not self._ctx.session.can_send_request:
            return Unavailable()
        approval, secret = await approvals.open(request, "url", on_answer="wait")
        try:
            opened = await self._ctx.session.elicit_url(
                _url_message(request),
                approvals.link(approval, secret),
                approval.id,
                related_request_id=self._ctx.request_id,
            )
        except NoBackChannelError:
            await approvals.expire(approval, "url")
            return Unavailable()
        except (MCPError, ValidationError) as exc:
            logger.warning("the client could not open the approval page (%s); nothing was sent", exc)
            await approvals.expire(approval, "url")
            return Declined("cancel", how="url", note="The client could not open the approval page.")
        if not isinstance(opened, ElicitResult) or opened.action != "accept":
            await approvals.expire(approval, "url")
            action = opened.action if isinstance(opened, ElicitResult) and opened.action == "decline" else "cancel"
            return Declined(action, how="url")
        answer = await self._wait(approvals, approval.id)
        try:
            await self._ctx.session.send_elicit_complete(approval.id, related_request_id=self._ctx.request_id)
        except (MCPError, NoBackChannelError):
            logger.debug("could not tell the client the approval page was answered")
        return answer

    async def _round_trip(self, approvals: Approvals, request: ConfirmationRequest) -> Answer:
        state = self._params.request_state
        responses = self._params.input_responses or {}
        approval_id = self._deployment.url_rounds.pop(state, None) if state else None
        if approval_id is None or URL_KEY not in responses:
            approval, secret = await approvals.open(request, "url", on_answer="wait")
            self._deployment.url_rounds[request.confirmation_id] = approval.id
            self._link = approvals.link(approval, secret)
            return Deferred("url")
        opened = responses.get(URL_KEY)
        if not isinstance(opened, ElicitResult) or opened.action != "accept":
            abandoned = await approvals.store.get(approval_id)
            if abandoned is not None:
                await approvals.expire(abandoned, "url")
            return Declined("cancel", state, how="url")
        answer = await self._wait(approvals, approval_id)
        if isinstance(answer, Accepted):
            return Accepted("url", state, by=answer.by)
        if isinstance(answer, Declined):
            return Declined(answer.action, state, how="url", by=answer.by, note=answer.note)
        return answer

    async def _wait(self, approvals: Approvals, approval_id: str) -> Answer:
        approval = await approvals.store.get(approval_id)
        if approval is None:
            return Declined("cancel", how="url", note="The approval page was lost (the server restarted).")
        return await wait_for_answer(
            approvals,
            approval,
            timeout=self._deployment.timeout,
            via="url",
            progress=self._progress,
            where="on the approval page their client opened",
        )

    def input_request(self, request: ConfirmationRequest) -> ElicitRequest:
        assert self._link is not None
        return ElicitRequest(params=ElicitRequestURLParams(message=_url_message(request), url=self._link))


class CallConfirmer:
    """The channels of one call, tried in order; remembers which one deferred the question."""

    def __init__(self, channels: list[Confirmer]) -> None:
        self.channels = channels
        self.deferred_by: RoundTripConfirmer | UrlConfirmer | None = None

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        for channel in self.channels:
            answer = await channel.confirm(request)
            if isinstance(answer, Deferred) and isinstance(channel, RoundTripConfirmer | UrlConfirmer):
                self.deferred_by = channel
            if not isinstance(answer, Unavailable):
                return answer
        return Unavailable()

    def input_required(self, request: ConfirmationRequest) -> InputRequiredResult:
        """The 2026-07-28 answer that asks the client to put the question to the person."""
        assert self.deferred_by is not None
        key = ANSWER_KEY if isinstance(self.deferred_by, RoundTripConfirmer) else URL_KEY
        ask = self.deferred_by.input_request(request)
        return InputRequiredResult(input_requests={key: ask}, request_state=request.confirmation_id)


def confirmer_for(
    ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams, deployment: Deployment | None = None
) -> CallConfirmer:
    deployment = deployment or Deployment()
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    form: Confirmer = RoundTripConfirmer(ctx, params) if modern else PushConfirmer(ctx)
    channels: list[Confirmer] = [form]
    approvals = deployment.approvals
    if approvals is not None:

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.session.report_progress(done, total, message)

        channels += [
            AppChannel(ctx, approvals),
            UrlConfirmer(ctx, params, deployment, progress),
            BrowserChannel(approvals, opener=deployment.opener, timeout=deployment.timeout, progress=progress),
            InboxChannel(approvals, webhook=deployment.webhook),
        ]
    return CallConfirmer(channels)
