"""Pending approvals: one record per call waiting for a person, answered at most once.

Each record is bound to its call (tool, canonical arguments, connection) and carries a single-use
secret of which only a digest is kept. The store is an interface with an in-process default; a
shared store (Redis) slots in for hosted deployments with several workers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio

from kartra_mcp.tools.call import CallResult, ChannelName
from kartra_mcp.tools.confirm import canonical
from kartra_mcp.tools.spec import Risk

State = Literal["pending", "approved", "declined", "expired"]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Approval:
    """A call waiting for a person's answer, and what became of it."""

    id: str
    secret_digest: str
    tool: str
    arguments: Mapping[str, Any]
    connection: str
    risk: Risk
    preview_text: str
    facts: Mapping[str, Any]
    channel: ChannelName
    expires_at: float
    # run: the answer runs the call (the model was given a pending result); wait: a waiting call runs it
    on_answer: Literal["run", "wait"] = "wait"
    state: State = "pending"
    answered_via: ChannelName | None = None
    answered_by: str | None = None
    result: CallResult | None = None
    answered: anyio.Event = field(default_factory=anyio.Event, repr=False)

    @property
    def call_digest(self) -> str:
        return hashlib.sha256(f"{self.tool}\x1f{canonical(self.arguments)}\x1f{self.connection}".encode()).hexdigest()

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(digest(secret), self.secret_digest)


class ApprovalStore(Protocol):
    """Where pending approvals live: in this process, or in Redis for replicas (`state.redis_approvals`).

    A shared store raises `StateUnavailable` when it cannot be reached, so nothing is opened or answered.
    """

    async def secret(self) -> bytes:
        """The key that signs approver cookies and page forms (the same on every replica sharing the store)."""
        ...

    async def put(self, approval: Approval, limit: int) -> bool:
        """Keep `approval`, unless its connection has `limit` pending unexpired ones: then False, nothing kept."""
        ...

    async def get(self, approval_id: str) -> Approval | None: ...

    async def pending(self) -> list[Approval]: ...

    async def settle(self, approval_id: str, state: State, via: ChannelName, by: str | None) -> Approval | None:
        """Move a pending approval to `state` once; returns None when it was not pending."""
        ...

    async def record(self, approval: Approval, result: CallResult) -> None:
        """Keep the outcome of the call an answer ran, for `check-approval`."""
        ...

    async def wait(self, approval: Approval, timeout: float) -> Approval:
        """The approval as it is once answered, or as it is after `timeout` seconds."""
        ...


class MemoryApprovalStore:
    """The in-process store: enough for one server process (stdio, or one HTTP worker)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, keep: float = 3600.0) -> None:
        self._clock = clock
        self._keep = keep
        self._items: dict[str, Approval] = {}
        self._key = secrets.token_bytes(32)

    async def secret(self) -> bytes:
        return self._key

    async def put(self, approval: Approval, limit: int) -> bool:
        self._forget_old()
        if sum(1 for a in await self.pending() if a.connection == approval.connection) >= limit:
            return False
        self._items[approval.id] = approval
        return True

    async def get(self, approval_id: str) -> Approval | None:
        return self._items.get(approval_id)

    async def pending(self) -> list[Approval]:
        now = self._clock()
        return [a for a in self._items.values() if a.state == "pending" and a.expires_at > now]

    async def settle(self, approval_id: str, state: State, via: ChannelName, by: str | None) -> Approval | None:
        approval = self._items.get(approval_id)
        if approval is None or approval.state != "pending":
            return None
        approval.state, approval.answered_via, approval.answered_by = state, via, by
        approval.answered.set()
        return approval

    async def record(self, approval: Approval, result: CallResult) -> None:
        approval.result = result

    async def wait(self, approval: Approval, timeout: float) -> Approval:
        held = self._items.get(approval.id, approval)
        with anyio.move_on_after(timeout):
            await held.answered.wait()
        return held

    def _forget_old(self) -> None:
        cutoff = self._clock() - self._keep
        for key in [k for k, a in self._items.items() if a.expires_at < cutoff]:
            del self._items[key]


def new_id() -> str:
    return "ap_" + secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)
