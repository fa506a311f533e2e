"""The types of one call: what the pipeline asks a confirmer, the answers it gets, and the result.

A confirmer answers "confirm this preview" with one of:

- `Accepted`: a person said yes, here and now; the call runs.
- `Declined`: a person said no or dismissed the question; nothing is sent.
- `Pending`: a person will answer elsewhere (an approval view, the inbox, a confirmation id); the
  model gets `Pending.result`, which can approve nothing.
- `Deferred`: the question goes back to the client in the result (2026-07-28 elicitation).
- `Unavailable`: this channel cannot reach a person; the next one is tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kartra_mcp.tools.preview import Preview
from kartra_mcp.tools.spec import Risk

# How a call was confirmed, as the audit log names it.
ChannelName = Literal["policy", "elicitation", "app", "url", "browser", "inbox", "token", "terminal", "cli --yes"]


@dataclass(frozen=True)
class ConfirmationRequest:
    """A call waiting for a person's yes, with what they are shown and what it is bound to."""

    tool: str
    risk: Risk
    preview: Preview
    confirmation_id: str
    expires_at: float
    arguments: Mapping[str, Any] = field(default_factory=dict)
    connection: str = ""


@dataclass(frozen=True)
class CallResult:
    """What the model gets back. `awaiting` is set when the client must ask the person and retry.

    `meta` goes to the result's `_meta`, which MCP Apps hosts pass to the view and not to the model.
    """

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False
    awaiting: ConfirmationRequest | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class Accepted:
    """A person said yes. `echoed_id` is the confirmation id a retried request carried back."""

    how: ChannelName
    echoed_id: str | None = None
    by: str | None = None


@dataclass(frozen=True)
class Declined:
    """A person said no or dismissed the question. `echoed_id` as for `Accepted`."""

    action: Literal["decline", "cancel"]
    echoed_id: str | None = None
    how: ChannelName = "elicitation"
    by: str | None = None
    # what the model is told besides "declined", e.g. that nobody answered in time
    note: str = ""


@dataclass(frozen=True)
class Unavailable:
    """This channel cannot ask the person."""


@dataclass(frozen=True)
class Deferred:
    """The question goes back to the client in the result; the client retries with the answer."""

    channel: ChannelName = "elicitation"


@dataclass(frozen=True)
class Pending:
    """A person will answer through `channel`, later; the model gets `result`, which approves nothing."""

    channel: ChannelName
    result: CallResult


Answer = Accepted | Declined | Unavailable | Deferred | Pending


class Confirmer(Protocol):
    async def confirm(self, request: ConfirmationRequest) -> Answer: ...


class NoConfirmer:
    """For callers that can never ask: every confirmation is unavailable."""

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        return Unavailable()
