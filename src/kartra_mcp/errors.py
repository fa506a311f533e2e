"""Every exception kartra-mcp raises, in one tree.

```
KartraMCPError
├── ConfigError                  settings or files that stop the server at start (never model-visible)
│   └── PolicyError              the policy file is invalid: file, key and what was expected
├── MembraneError                talking to Membrane failed
│   ├── MembraneTransportError   no usable HTTP exchange
│   │   ├── MembraneUnreachable  the request never left: safe to send again
│   │   ├── MembraneTimeout      no answer in time: a write may or may not have happened
│   │   └── MembraneAnswerTooLarge  an answer larger than we read: not asked again, a write's outcome unknown
│   │       └── MembraneAnswerEncoded  compressed though not asked to be: its size cannot be bounded
│   ├── MembraneProtocolError    a success status with a body Membrane does not send
│   └── MembraneApiError         Membrane answered with its error body {type, key, message, data}
│       ├── MembraneBadRequest        400
│       ├── MembraneNotAuthenticated  401
│       ├── MembraneAccessDenied      403
│       ├── MembraneNotFound          404
│       ├── MembraneRateLimited       429
│       ├── MembraneServerError       5xx
│       └── MembraneRunFailed         a raw request's run started (it has an actionRunId), then failed
├── KartraError                  Kartra refused the call (HTTP 200, status "Error", a type code)
├── ToolCallError                the model can act on it: becomes a tool result with isError
│   ├── UnknownToolError
│   ├── InvalidArgumentsError    every bad path and what was expected
│   ├── ProxyRequestRefused      a proxy request we will not send (absolute URL, `..`, a credential header)
│   ├── ActionDenied             the policy, a cap or the account's state forbids the call
│   ├── ConfirmationDeclined     the person said no, or dismissed the question
│   ├── ConfirmationInvalid      a confirmation id that is forged, expired, used or unknown
│   ├── AuditUnavailable         the audit log cannot record the call, so nothing is sent
│   ├── StateUnavailable         the shared state (Redis) cannot be reached, so nothing is sent
│   └── TooManyPending           too many calls wait for a person's answer on this connection
└── SandboxRefusal               the sandbox's own signal to answer a request with an error
    ├── KartraRefusal            ... as Kartra does: HTTP 200, {status: "Error", message, type}
    └── MembraneRefusal          ... as Membrane does: an HTTP error status with its error body
```

Behaviour hangs on class attributes, not on `isinstance` chains: `retryable` says whether a read
may be sent again, `may_have_executed` whether a write may have taken effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class KartraMCPError(Exception):
    """Root of every error kartra-mcp raises on purpose."""


class ConfigError(KartraMCPError):
    """Settings, credentials or files that make starting impossible; the message says what to set."""


class PolicyError(ConfigError):
    """The policy file is invalid."""

    def __init__(self, path: str, key: str, expected: str) -> None:
        self.path = path
        self.key = key
        self.expected = expected
        super().__init__(f"{path}: {key}: {expected}")


class MembraneError(KartraMCPError):
    """A call to Membrane failed."""

    retryable: ClassVar[bool] = False
    # Whether a write sent with this failure may nevertheless have been carried out.
    may_have_executed: ClassVar[bool] = False


class MembraneTransportError(MembraneError):
    """No usable HTTP exchange with Membrane."""

    retryable = True
    may_have_executed = True


class MembraneUnreachable(MembraneTransportError):
    """The connection could not be made, so nothing was sent."""

    may_have_executed = False


class MembraneTimeout(MembraneTransportError):
    """Membrane did not answer in time."""


class MembraneAnswerTooLarge(MembraneTransportError):
    """Membrane's answer was larger than the client reads, so it was refused unread.

    Asked again it would be as large, so a read is not retried; a write was sent, so it may have happened.
    """

    retryable = False


class MembraneAnswerEncoded(MembraneAnswerTooLarge):
    """Membrane's answer came compressed though none was asked for, so its size once read cannot be bounded."""


class MembraneProtocolError(MembraneError):
    """Membrane answered with a success status but a body it never sends."""

    retryable = True
    may_have_executed = True


class MembraneApiError(MembraneError):
    """Membrane answered with an error status and its error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "",
        key: str = "",
        data: Any = None,
        action_run_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.type = type
        self.key = key
        self.data = data
        self.action_run_id = action_run_id
        label = f"{type}/{key}" if key else type or "error"
        super().__init__(f"Membrane {status_code} {label}: {message}")


class MembraneBadRequest(MembraneApiError):
    """400: Membrane rejected the request itself (often the action input)."""


class MembraneNotAuthenticated(MembraneApiError):
    """401: the token is missing, wrong or expired."""


class MembraneAccessDenied(MembraneApiError):
    """403: the token may not do this."""


class MembraneNotFound(MembraneApiError):
    """404: no such connection, action or run."""


class MembraneRateLimited(MembraneApiError):
    """429: too many requests; nothing was carried out."""

    retryable = True


class MembraneServerError(MembraneApiError):
    """5xx: Membrane failed; a write may or may not have reached Kartra."""

    retryable = True
    may_have_executed = True


class MembraneRunFailed(MembraneApiError):
    """A raw request `/act` started as a run (its error names an actionRunId) failed without saying
    what the upstream answered: a write may have reached Kartra."""

    may_have_executed = True


class KartraError(KartraMCPError):
    """Kartra refused the call: HTTP 200 with `status: "Error"` and a numeric type code."""

    def __init__(self, message: str, code: str | None = None, *, command: str | None = None) -> None:
        self.message = message
        self.code = code
        self.command = command
        where = f" ({command})" if command else ""
        suffix = f" [Kartra type {code}]" if code else ""
        super().__init__(f"Kartra refused{where}: {message}{suffix}")


class ToolCallError(KartraMCPError):
    """A failure the model can act on; the server returns it as a tool result with isError."""


class UnknownToolError(ToolCallError):
    """No tool of that name."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"Unknown tool {name!r}.{hint} List the tools to see what is available.")


@dataclass(frozen=True, slots=True)
class ArgumentProblem:
    """One thing wrong with the arguments: where, and what was expected there."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class InvalidArgumentsError(ToolCallError):
    """The arguments do not match the tool's input schema; nothing was sent."""

    def __init__(self, tool: str, problems: Sequence[ArgumentProblem]) -> None:
        self.tool = tool
        self.problems = list(problems)
        lines = "\n".join(f"- {p}" for p in self.problems)
        super().__init__(f"Invalid arguments for {tool}; nothing was sent. Fix these and call again:\n{lines}")


class ProxyRequestRefused(ToolCallError):
    """A proxy request that will not be sent; the message says what to change."""


class ActionDenied(ToolCallError):
    """The policy, a cap or the account's state forbids the call; nothing was sent."""

    def __init__(self, reason: str, *, rule: str = "policy") -> None:
        self.reason = reason
        self.rule = rule
        super().__init__(reason)


class ConfirmationDeclined(ToolCallError):
    """The person declined or dismissed the confirmation; nothing was sent."""

    def __init__(self, action: str, note: str = "") -> None:
        self.action = action
        verb = "declined" if action == "decline" else "dismissed the question without confirming"
        if note:
            verb = "did not confirm"
        super().__init__(
            f"The person {verb}; nothing was sent.{f' {note}' if note else ''} Do not retry unless they ask you to."
        )


class ConfirmationInvalid(ToolCallError):
    """A confirmation id that is forged, expired, already used or unknown; nothing was run."""


class AuditUnavailable(ToolCallError):
    """The audit log cannot record a call before it is sent, so it is not sent (fail closed)."""


class StateUnavailable(ToolCallError):
    """The shared state (confirmations, caps, refund totals) cannot be reached, so nothing is sent."""


class TooManyPending(ToolCallError):
    """Too many calls already wait for a person's answer on this connection, so no new one is asked or sent."""


class SandboxRefusal(KartraMCPError):
    """Raised inside the sandbox to answer a request with an error."""


class KartraRefusal(SandboxRefusal):
    """Answer as Kartra does: HTTP 200 with `{status: "Error", message, type}`."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")

    def body(self) -> dict[str, str]:
        return {"status": "Error", "message": self.message, "type": str(self.code)}


class MembraneRefusal(SandboxRefusal):
    """Answer as Membrane does: an error status and `{type, key, message, data?}`."""

    def __init__(
        self, status: int, message: str, *, type: str = "bad_request", key: str | None = None, data: Any = None
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.key = key
        self.data = data
        super().__init__(f"{status} {type}/{key}: {message}")

    def body(self) -> Mapping[str, Any]:
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.key:
            body["key"] = self.key
        if self.data is not None:
            body["data"] = self.data
        return body
