"""Built-in tools that are not Kartra actions, as functions given what they need.

- `check-approval`: the state of a call that waits for a person (read-only; it approves nothing).
- `approval-answer`: the app-only tool the MCP Apps approval view calls with its secret; hosts hide
  it from the model, and without the secret (which no model-visible field carries) it does nothing.
"""

from __future__ import annotations

import time
from typing import Any

from kartra_mcp.errors import ConfirmationInvalid
from kartra_mcp.tools.approval import CHECK_TOOL, Approvals
from kartra_mcp.tools.call import CallResult
from kartra_mcp.tools.spec import Risk, ToolSpec

APP_TOOL = "approval-answer"
_APPROVAL_ID = {"type": "string", "pattern": "^ap_[0-9a-f]{16}$", "description": "The approval_id from the result."}

CHECK_APPROVAL_SPEC = ToolSpec(
    name=CHECK_TOOL,
    title="Check a pending approval",
    description=(
        "Report whether a person has approved or declined a call that waits for them, by the approval_id its "
        "result gave, and the outcome once it ran. Read-only: it cannot approve, decline or run anything."
    ),
    input_schema={
        "type": "object",
        "properties": {"approval_id": _APPROVAL_ID},
        "required": ["approval_id"],
        "additionalProperties": False,
    },
    risk=Risk.READ,
    kind="check",
)

APP_ANSWER_SPEC = ToolSpec(
    name=APP_TOOL,
    title="Answer an approval (approval view only)",
    description=(
        "Called by the kartra-mcp approval view when the person presses Approve or Decline. Needs the view's "
        "single-use secret; not for the model."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "approval_id": _APPROVAL_ID,
            "secret": {"type": "string", "minLength": 20, "maxLength": 200},
            "answer": {"type": "string", "enum": ["approve", "decline"]},
        },
        "required": ["approval_id", "secret", "answer"],
        "additionalProperties": False,
    },
    risk=Risk.CRITICAL,
    kind="app",
)


async def check_approval(approvals: Approvals | None, approval_id: str, connection: str) -> CallResult:
    """The state of one approval on this connection, and the outcome of its call once it ran."""
    approval = await approvals.store.get(approval_id) if approvals else None
    if approvals is None or approval is None or approval.connection != connection:
        raise ConfirmationInvalid(f"No pending approval {approval_id!r} on this connection (or the server restarted).")
    state = approval.state
    if state == "pending" and approvals.now() > approval.expires_at:
        state = "expired"
    structured: dict[str, Any] = {
        "approval_id": approval.id,
        "tool": approval.tool,
        "state": state,
        "answered_via": approval.answered_via,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(approval.expires_at)),
    }
    if state == "pending":
        text = f"Still waiting for a person to approve or decline {approval.tool} ({approval.id})."
    elif state == "expired":
        text = f"Nobody answered in time; {approval.tool} ({approval.id}) expired and nothing was sent."
    elif state == "declined":
        text = f"The person declined {approval.tool} ({approval.id}); nothing was sent. Do not retry unless asked."
    else:
        outcome = approval.result.text if approval.result else "it is running"
        structured["outcome"] = approval.result.structured if approval.result else None
        structured["outcome_is_error"] = approval.result.is_error if approval.result else None
        text = f"A person approved {approval.tool} ({approval.id}) and it ran. Outcome: {outcome}"
    return CallResult(text, structured)


async def answer_from_app(approvals: Approvals | None, arguments: dict[str, Any]) -> CallResult:
    """The approval view's Approve or Decline, checked against the view's secret."""
    if approvals is None:
        raise ConfirmationInvalid("There are no approvals on this server.")
    approval = await approvals.answer(
        str(arguments["approval_id"]),
        approve=arguments["answer"] == "approve",
        via="app",
        by="person in the MCP Apps approval view",
        secret=str(arguments["secret"]),
    )
    if approval.state == "declined":
        return CallResult("Declined: nothing was sent.", {"state": "declined", "approval_id": approval.id})
    result = approval.result
    text = f"Approved. {result.text if result else ''}".strip()
    return CallResult(
        text,
        {"state": "approved", "approval_id": approval.id, "outcome_is_error": bool(result and result.is_error)},
    )
