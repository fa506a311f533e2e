"""What kartra-mcp knows about Kartra's operations: how risky each is, which Membrane action runs
which Kartra command, and which commands a raw API body would run.

Kartra's API is one POST endpoint, so neither the HTTP method nor the path says whether a call
reads or moves money: only the `actions[N][cmd]` values in the body do. A command not known here
is critical; how actions not known here are classed is in `classify`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kartra_mcp import phpform
from kartra_mcp.tools.spec import Risk

R, W, D, C = Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE, Risk.CRITICAL


@dataclass(frozen=True)
class Command:
    """One Kartra command: its risk, whether repeating it changes nothing more, the action that runs it."""

    cmd: str
    risk: Risk
    idempotent: bool = False
    action: str | None = None


_COMMANDS = (
    Command("get_lead", R, action="get-lead"),
    Command("search_lead", R, action="search-lead"),
    Command("retrieve_account_pages", R, action="retrieve-account-pages"),
    Command("retrieve_custom_fields", R, action="retrieve-account-custom-fields"),
    Command("retrieve_account_sequences", R, action="retrieve-account-sequences"),
    Command("retrieve_account_tags", R, action="retrieve-account-tags"),
    Command("retrieve_account_lists", R, action="retrieve-account-lists"),
    Command("retrieve_account_products", R, action="retrieve-account-products"),
    Command("retrieve_account_memberships", R, action="retrieve-account-memberships"),
    Command("get_transaction_details", R, action="get-transaction-details"),
    Command("search_transaction", R, action="search-transaction"),
    Command("retrieve_transactions_from_lead", R, action="retrieve-transactions-from-lead"),
    Command("get_subscription_details", R, action="get-subscription-details"),
    Command("search_subscription", R, action="search-subscription"),
    Command("retrieve_subscriptions_from_lead", R, action="retrieve-subscriptions-from-lead"),
    Command("create_lead", W, action="create-lead"),
    Command("edit_lead", W, idempotent=True, action="edit-lead"),
    Command("assign_tag", W, idempotent=True, action="assign-tag"),
    Command("subscribe_lead_to_list", W, idempotent=True, action="subscribe-lead-to-list"),
    Command("subscribe_lead_to_sequence_at_step", W, action="subscribe-lead-to-sequence"),
    Command("give_points_to_lead", W, action="give-points-to-lead"),
    Command("create_custom_field", W, action="create-custom-field"),
    Command("calendar_subscribe", W),
    Command("grant_membership_access", W, idempotent=True, action="grant-membership-access"),
    Command("unassign_tag", D, idempotent=True, action="unassign-tag"),
    Command("unsubscribe_lead_from_list", D, idempotent=True, action="unsubscribe-lead-from-list"),
    Command("unsubscribe_lead_from_sequence", D, idempotent=True, action="unsubscribe-lead-from-sequence"),
    Command("remove_points_from_lead", D, action="remove-points-from-lead"),
    Command("calendar_cancel", D, idempotent=True),
    Command("refund_transaction", C, action="refund-transaction"),
    Command("cancel_transaction", C, action="cancel-subscription"),
    Command("modify_subscription_status", C, action="modify-subscription-status"),
    Command("edit_subscription", C),
    Command("revoke_membership_access", C, action="revoke-membership-access"),
)
COMMANDS: dict[str, Command] = {c.cmd: c for c in _COMMANDS}
# What each command does, in words a person confirming it reads.
DOES: dict[str, str] = {
    "get_lead": "Read a lead's details",
    "search_lead": "Search for leads",
    "retrieve_account_pages": "List the account's pages",
    "retrieve_custom_fields": "List the account's custom fields",
    "retrieve_account_sequences": "List the account's sequences",
    "retrieve_account_tags": "List the account's tags",
    "retrieve_account_lists": "List the account's lists",
    "retrieve_account_products": "List the account's products",
    "retrieve_account_memberships": "List the account's memberships",
    "get_transaction_details": "Read a transaction",
    "search_transaction": "Search transactions",
    "retrieve_transactions_from_lead": "List a lead's transactions",
    "get_subscription_details": "Read a subscription",
    "search_subscription": "Search subscriptions",
    "retrieve_subscriptions_from_lead": "List a lead's subscriptions",
    "create_lead": "Create a lead",
    "edit_lead": "Change a lead's details",
    "assign_tag": "Add a tag to a lead",
    "subscribe_lead_to_list": "Subscribe a lead to a list",
    "subscribe_lead_to_sequence_at_step": "Start a sequence for a lead at a given step",
    "give_points_to_lead": "Give points to a lead",
    "create_custom_field": "Create a custom field",
    "calendar_subscribe": "Book a lead into a calendar",
    "grant_membership_access": "Give a lead access to a membership",
    "unassign_tag": "Remove a tag from a lead",
    "unsubscribe_lead_from_list": "Unsubscribe a lead from a list",
    "unsubscribe_lead_from_sequence": "Stop a sequence for a lead; its progress is lost",
    "remove_points_from_lead": "Take points away from a lead",
    "calendar_cancel": "Cancel a lead's calendar booking",
    "refund_transaction": "Refund a transaction",
    "cancel_transaction": "Cancel a subscription; no further payments are taken",
    "modify_subscription_status": "Pause, resume or cancel a subscription",
    "edit_subscription": "Change a subscription's billing",
    "revoke_membership_access": "Remove a lead's access to a membership",
}
ACTIONS: dict[str, Command] = {c.action: c for c in _COMMANDS if c.action}


# How Kartra spells every command: a name outside it (another case, a zero-width or full-width
# letter, a NUL) is refused, since no one can tell which command Kartra would take it for.
_WELL_FORMED = re.compile(r"[a-z][a-z0-9_]{0,63}")


def command_problem(cmd: str) -> str | None:
    """Why a command name in a request is refused, or None for a known or a plainly spelled unknown one."""
    if cmd in COMMANDS:
        return None
    shown = json.dumps(cmd)  # escapes zero-width, control and non-ASCII characters, so the person sees them
    if not cmd:
        return "Every entry in 'actions' needs its 'cmd'."
    if _WELL_FORMED.fullmatch(cmd):
        return None
    plain = "".join(c for c in unicodedata.normalize("NFKC", cmd).casefold() if c.isascii() and c.isprintable())
    near = plain.strip() if plain.strip() in COMMANDS else None
    hint = f" Did you mean {near}? Spell it exactly so." if near else ""
    return (
        f"The Kartra command {shown} is not spelled as any command is (lower-case letters, digits and "
        f"underscores only), so it is refused rather than guessed at.{hint}"
    )


@dataclass(frozen=True)
class Invocation:
    """One Kartra command a call would run, with its parameters and the lead it is about.

    `cmd` is kept exactly as given: the proxy refuses any name that is not spelled as Kartra's
    commands are (`command_problem`), so what is classed is what Kartra reads.
    """

    cmd: str
    params: Mapping[str, Any]
    lead: Mapping[str, Any]

    @property
    def risk(self) -> Risk:
        known = COMMANDS.get(self.cmd)
        return known.risk if known else C

    @property
    def action(self) -> str | None:
        """The action that runs this command, for the policy's per-action entries."""
        known = COMMANDS.get(self.cmd)
        return known.action if known else None


# Parameters that each name the same target, of which a change may give only one: Kartra picks one
# by rules of its own, and a preview must describe the record that will change.
_ONE_TARGET: dict[str, tuple[tuple[str, ...], ...]] = {
    "cancel_transaction": (
        ("transaction_id", "transaction_internal_subscription_id", "transaction_subscription_id", "subscription_id"),
    ),
    "modify_subscription_status": (
        ("subscription_id", "transaction_internal_subscription_id", "transaction_id", "transaction_subscription_id"),
    ),
    "grant_membership_access": (("membership_id", "membership_name"), ("level_id", "level_name")),
    "revoke_membership_access": (("membership_id", "membership_name"), ("level_id", "level_name")),
}
_LEAD_KEYS = ("email", "lead_id", "id")


def ambiguity(invocation: Invocation) -> str | None:
    """Why a change names its target more than one way, or None when it names it once."""
    given = [k for k in _LEAD_KEYS if invocation.lead.get(k)]
    if len(given) > 1:
        return (
            f"{invocation.cmd} names its lead both by {' and by '.join(given)}; give one, so the lead shown to "
            "the person is the one that changes."
        )
    for group in _ONE_TARGET.get(invocation.cmd, ()):
        named = [k for k in group if invocation.params.get(k) not in (None, "")]
        if len(named) > 1:
            return f"{invocation.cmd} names its target by {', '.join(named)}; give exactly one of {', '.join(group)}."
    return None


def one_lead_note(action_key: str | None, schema: Mapping[str, Any]) -> str | None:
    """For a known change that can name its lead more than one way: say that a call may use only one.

    Reads are not held to it (Kartra takes the id, and nothing changes), so they get no note.
    """
    known = ACTIONS.get(action_key or "")
    if known is None or known.risk is Risk.READ:
        return None
    named = [k for k in _LEAD_KEYS if k in schema.get("properties", {})]
    if len(named) < 2:
        return None
    return f"Give {' or '.join(named)}, never both."


def invocations_for_action(key: str, arguments: Mapping[str, Any]) -> list[Invocation]:
    """The Kartra command a known action runs, with its arguments as the command's parameters."""
    known = ACTIONS.get(key)
    if known is None:
        return []
    lead = {k: arguments[k] for k in ("email", "lead_id", "id") if arguments.get(k)}
    return [Invocation(known.cmd, arguments, lead)]


def invocations_in_form(form: Mapping[str, Any]) -> list[Invocation] | None:
    """The commands a decoded Kartra API body runs, in order; None when `actions` is not a list of objects."""
    lead: Mapping[str, Any] = form["lead"] if isinstance(form.get("lead"), Mapping) else {}
    found: list[Invocation] = []
    if "get_lead" in form:
        block = form["get_lead"] if isinstance(form["get_lead"], Mapping) else {}
        found.append(Invocation("get_lead", block, block))
    for action in phpform.as_list(form.get("actions")):
        if not isinstance(action, Mapping):
            return None
        found.append(Invocation(str(action.get("cmd", "")), action, lead))
    return found
