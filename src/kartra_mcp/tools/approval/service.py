"""Opening approvals for calls and taking people's answers, auditing every refusal.

An answer is accepted once, for a pending approval, before it expires, and only from whoever holds
its secret (the link's, or the app view's) or the approver credential. Everything else - a second
answer, a replay, a forged or expired link - is refused and leaves an audit row.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, NoReturn

from kartra_mcp.errors import AuditUnavailable, ConfirmationInvalid
from kartra_mcp.tools.approval.store import Approval, ApprovalStore, MemoryApprovalStore, digest, new_id, new_secret
from kartra_mcp.tools.audit import AuditTrail
from kartra_mcp.tools.call import CallResult, ChannelName, ConfirmationRequest
from kartra_mcp.tools.confirm import PENDING_LIMIT, too_many_pending

logger = logging.getLogger(__name__)

# Runs (or, when declined, records) an approval that was answered after its call returned pending.
Settler = Callable[[Approval], Awaitable[CallResult]]


class Approvals:
    """The pending approvals of one server, and the one way to answer them."""

    def __init__(
        self,
        audit: AuditTrail,
        *,
        ttl: float = 300.0,
        store: ApprovalStore | None = None,
        clock: Callable[[], float] = time.time,
        approver_token: str | None = None,
        limit: int = PENDING_LIMIT,
    ) -> None:
        self.audit = audit
        self.ttl = ttl
        self.limit = limit
        self._clock = clock
        self.store: ApprovalStore = store or MemoryApprovalStore(clock=clock)
        self.settler: Settler | None = None
        # Where the approval page is served (loopback for stdio, the server's own URL for HTTP).
        self.base_url: str | None = None
        self._approver = digest(approver_token) if approver_token else None

    @property
    def needs_approver(self) -> bool:
        """Whether the page asks for the approver credential (HTTP deployments) rather than a link alone."""
        return self._approver is not None

    def now(self) -> float:
        return self._clock()

    async def open(
        self, request: ConfirmationRequest, channel: ChannelName, *, on_answer: Literal["run", "wait"]
    ) -> tuple[Approval, str]:
        """A new approval bound to this call, and its single-use secret (never stored, never shown to the model).

        Raises `StateUnavailable` when a shared store cannot keep it, `TooManyPending` when the connection
        already has `limit` approvals pending: then nobody is asked and nothing is sent.
        """
        secret = new_secret()
        approval = Approval(
            id=new_id(),
            secret_digest=digest(secret),
            tool=request.tool,
            arguments=dict(request.arguments),
            connection=request.connection,
            risk=request.risk,
            preview_text=request.preview.text(),
            facts=dict(request.preview.facts),
            channel=channel,
            expires_at=min(request.expires_at, self._clock() + self.ttl),
            on_answer=on_answer,
        )
        if not await self.store.put(approval, self.limit):
            raise too_many_pending(self.limit, self.ttl)
        return approval, secret

    def link(self, approval: Approval, secret: str | None = None) -> str:
        """The page of one approval; with the secret, the page works without the approver credential."""
        base = (self.base_url or "").rstrip("/")
        return f"{base}/approvals/{approval.id}" + (f"?k={secret}" if secret else "")

    async def csrf(self, approval_id: str) -> str:
        """The token a page's form carries back, so a form on another site cannot answer."""
        return hmac.new(await self.store.secret(), f"csrf\x1f{approval_id}".encode(), hashlib.sha256).hexdigest()

    async def approver_cookie(self) -> str:
        # Signed with the store's key: a sign-in on one replica holds on every replica sharing the store.
        return hmac.new(await self.store.secret(), b"approver", hashlib.sha256).hexdigest()

    def is_approver_token(self, presented: str) -> bool:
        return self._approver is not None and hmac.compare_digest(digest(presented), self._approver)

    async def is_approver_cookie(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, await self.approver_cookie())

    async def answer(
        self,
        approval_id: str,
        *,
        approve: bool,
        via: ChannelName,
        by: str | None,
        secret: str | None = None,
        approver: bool = False,
    ) -> Approval:
        """Record a person's answer once; raises `ConfirmationInvalid` (and audits it) otherwise."""
        approval = await self.store.get(approval_id)
        if approval is None:
            await self.refuse(None, f"unknown approval {approval_id[:40]!r} (a forged or mistyped link)", via, by)
        elif not approver and not (secret and approval.matches(secret)):
            await self.refuse(approval, "the link's secret is missing or wrong (a forged link)", via, by)
        elif approval.state != "pending":
            await self.refuse(approval, f"already {approval.state}: each approval is answered once", via, by)
        elif self._clock() > approval.expires_at:
            await self.store.settle(approval.id, "expired", via, by)
            await self.refuse(approval, "the approval expired", via, by)
        settled = await self.store.settle(approval_id, "approved" if approve else "declined", via, by)
        if settled is None:  # answered in between: the first answer stands
            await self.refuse(approval, "already answered: each approval is answered once", via, by)
        if settled.on_answer == "run" and self.settler is not None:
            settled.result = await self.settler(settled)
            await self.store.record(settled, settled.result)
        return settled

    async def expire(self, approval: Approval, via: ChannelName) -> None:
        """No answer came in time: the link stops working."""
        await self.store.settle(approval.id, "expired", via, None)

    async def refuse(self, approval: Approval | None, reason: str, via: ChannelName, by: str | None) -> NoReturn:
        """Audit a refused answer and raise it (refused all the same when the log cannot record it)."""
        logger.warning("approval answer refused: %s", reason)
        with contextlib.suppress(AuditUnavailable):
            await self._audit_refusal(approval, reason, via, by)
        raise ConfirmationInvalid(f"This approval cannot be answered: {reason}. Nothing was run.")

    async def _audit_refusal(self, approval: Approval | None, reason: str, via: ChannelName, by: str | None) -> None:
        await self.audit.intent(
            tool=approval.tool if approval else "approval-page",
            action=None,
            arguments={"approval": approval.id if approval else None},
            risk=approval.risk.value if approval else "critical",
            decision="confirm",
            confirmation=via,
            connection=approval.connection if approval else None,
            outcome="refused",
            error=f"approval answer refused: {reason}; nothing was run",
            answered_by=by,
        )
