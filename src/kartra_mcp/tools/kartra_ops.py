"""What kartra-mcp knows about Kartra's operations: how risky each is, which Membrane action runs
which Kartra command, and which commands a raw API body would run.

Kartra's API is one POST endpoint, so neither the HTTP method nor the path says whether a call
reads or moves money: only the `actions[N][cmd]` values in the body do. Classification never
guesses low: an action or command not known here, and not clearly a read by its Membrane type and
name, is critical.
"""

from __future__ import annotations

import re
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
ACTIONS: dict[str, Command] = {c.action: c for c in _COMMANDS if c.action}

# Words in an unknown action's key or name, strongest first. Talking to customers cannot be undone
# either, so sending counts with moving money.
_CRITICAL_PARTS = ("refund", "chargeback", "cancel", "revoke", "terminate", "charge", "payment", "payout")
_CRITICAL_WORDS = frozenset({"pay", "send", "notify", "broadcast"})
_DESTRUCTIVE_WORDS = ("delete", "remove", "unsubscribe", "unassign", "archive", "erase", "purge", "clear", "reset")
_WRITE_WORDS = frozenset(
    {
        "create", "add", "assign", "subscribe", "update", "edit", "give", "grant", "tag", "set", "put", "post",
        "upsert", "import", "move", "copy", "change", "modify", "enable", "disable", "start", "stop", "trigger",
        "run", "execute", "invite", "apply", "mark", "save", "write", "register", "attach", "link", "merge",
    }
)  # fmt: skip
_READ_WORDS = frozenset({"get", "list", "retrieve", "search", "find", "fetch", "lookup", "read", "count", "check"})
_READ_TYPES = frozenset({"list-data-records", "find-data-record-by-id", "match-data-record", "search-data-record"})
_WRITE_TYPES = frozenset({"create-data-record", "find-or-create-data-record", "update-data-record"})
_WORD = re.compile(r"[a-z0-9]+")


def classify_action(key: str, name: str = "", action_type: str | None = None) -> tuple[Risk, bool]:
    """An action's risk and idempotence: from the built-in table, else from its type, key and name.

    A read needs both a read type or verb and no word of any other kind anywhere in its key or
    name (`find-or-create-lead` is a write); what matches nothing is critical.
    """
    known = ACTIONS.get(key)
    if known is not None:
        return known.risk, known.idempotent
    text = f"{key} {name}".casefold()
    words = set(_WORD.findall(text))
    if any(part in text for part in _CRITICAL_PARTS) or words & _CRITICAL_WORDS:
        return C, False
    if action_type == "delete-data-record" or any(word in text for word in _DESTRUCTIVE_WORDS):
        return D, False
    if action_type in _WRITE_TYPES or words & _WRITE_WORDS:
        return W, False
    if action_type in _READ_TYPES or (
        words & _READ_WORDS and action_type in (None, "connector-operation", "api-request-to-external-app")
    ):
        return R, True
    return C, False


@dataclass(frozen=True)
class Invocation:
    """One Kartra command a call would run, with its parameters and the lead it is about.

    `cmd` is folded to lower case: classing `Refund_Transaction` as a refund errs on the safe side
    whether or not Kartra reads command names case-blind.
    """

    cmd: str
    params: Mapping[str, Any]
    lead: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cmd", self.cmd.strip().casefold())

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
    return f"Name the lead by {' or by '.join(named)}, never more than one: a call that gives both is refused."


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
