"""Reading Kartra's answers and writing them up for the model.

Kartra answers every call with HTTP 200; a failure is a body with `status: "Error"`, at the top
level or in the slot of a chained command. Those are errors for the model, with Kartra's message,
its type code, and where it helps, what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kartra_mcp.errors import KartraError
from kartra_mcp.jsoncodec import compact

MAX_TEXT = 60_000

# What to do after Kartra's most common refusals.
_HINTS = {
    "206": "Give the lead's email or lead_id.",
    "212": "No tag by that name: list them with retrieve-account-tags (tags must exist before they are assigned).",
    "214": "No tag by that name: list them with retrieve-account-tags.",
    "219": "No sequence by that name: list them with retrieve-account-sequences.",
    "220": "No sequence by that name: list them with retrieve-account-sequences.",
    "230": "That step is not in the sequence.",
    "231": "No list by that name: list them with retrieve-account-lists.",
    "209": "No list by that name: list them with retrieve-account-lists.",
    "234": "No lead with that email or id. Check the spelling, or create the lead first.",
    "243": "No lead with that email or id. Check the spelling, or create the lead first.",
    "244": "A lead with that email already exists: use edit-lead to change it.",
    "245": "That lead was deleted in Kartra.",
    "247": "No transaction with that id: find the lead's transactions with retrieve-transactions-from-lead.",
    "248": "No subscription with that id: see retrieve-subscriptions-from-lead.",
    "249": "That transaction is not part of a recurring subscription.",
    "251": "It was refunded before; check retrieve-transactions-from-lead before doing anything else.",
    "252": "The subscription was already cancelled.",
    "253": "Only non-test sales and rebills can be refunded or cancelled.",
    "262": "The Kartra app may not run this command, or the command name is wrong.",
    "268": "The amount is not valid: it must be more than 0 and at most what is left to refund.",
    "271": "Custom field values have the wrong shape: text for text fields, option ids for choice fields.",
}

# A read that shows whether a write whose outcome is unknown happened.
CHECK_WITH = {
    "refund_transaction": "retrieve-transactions-from-lead (look for a refund whose parent is the transaction)",
    "cancel_transaction": "get-subscription-details",
    "modify_subscription_status": "get-subscription-details",
    "create_lead": "get-lead",
    "edit_lead": "get-lead",
    "assign_tag": "get-lead",
    "unassign_tag": "get-lead",
    "subscribe_lead_to_list": "get-lead",
    "unsubscribe_lead_from_list": "get-lead",
    "subscribe_lead_to_sequence_at_step": "get-lead",
    "unsubscribe_lead_from_sequence": "get-lead",
    "grant_membership_access": "get-lead",
    "revoke_membership_access": "get-lead",
    "give_points_to_lead": "get-lead",
    "remove_points_from_lead": "get-lead",
}


def kartra_failure(data: Any) -> KartraError | None:
    """The refusal in a Kartra answer, if there is one (top level first, then each chained command)."""
    if not isinstance(data, Mapping):
        return None
    if str(data.get("status", "")).casefold() == "error":
        return KartraError(str(data.get("message") or "no message"), _code(data.get("type")))
    for entry in data.get("actions") or ():
        if not isinstance(entry, Mapping):
            continue
        for command, result in entry.items():
            if isinstance(result, Mapping) and str(result.get("status", "")).casefold() == "error":
                return KartraError(
                    str(result.get("message") or "no message"), _code(result.get("type")), command=str(command) or None
                )
    return None


def _code(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def describe_failure(error: KartraError, *, commands: int = 1) -> str:
    """Kartra's refusal in words; with several chained commands, the ones before it did run."""
    hint = _HINTS.get(error.code or "")
    effect = " Nothing changed." if commands <= 1 else " Commands before it in the same request did run."
    return f"{error}.{effect}" + (f" {hint}" if hint else "")


def render(data: Any) -> str:
    """Compact JSON for the model; very large answers are cut (the structured content stays whole)."""
    text = compact(data)
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + f"… [cut at {MAX_TEXT} of {len(text)} characters; the structured content is whole]"
    return text
