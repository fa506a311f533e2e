"""What a call will do, in plain words, with the facts fetched first.

Every value that comes from data (Kartra's records, the model's arguments, Membrane's names) is
shown quoted and on one line (`show`), so no value can pose as a line of the preview or as the
server speaking. A person asked to confirm a refund sees the amount, currency, customer, product,
date, what was already refunded and the limit per transaction; for a cancellation the subscription,
its customer and price; for a revoke the lead, membership and level; for any other command what it
does, in words. Calls that cannot do what they say are refused here, before anyone is asked: a
refund of a refunded transaction, more than is left, or past the limit; cancelling a cancelled
subscription; revoking access the lead does not have.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kartra_mcp.errors import ActionDenied, KartraError, MembraneError
from kartra_mcp.tools.kartra_ops import DOES, Invocation

# Runs one Kartra read command and returns its result object (KartraError when Kartra refuses).
Reader = Callable[[str, Mapping[str, Any], Mapping[str, Any]], Awaitable[Mapping[str, Any]]]

# What counts as already refunded of a transaction, given Kartra's figure (see `refund_ledger`).
Counted = Callable[[str, float], Awaitable[float]]

_REFUNDS = ("refund", "partial_refund", "chargeback")


async def _as_seen(transaction: str, seen: float) -> float:
    return seen


@dataclass(frozen=True)
class RefundFacts:
    """A refund, checked: how much, what was already refunded (by Kartra; and counting this server's), of what."""

    transaction: str
    amount: float
    seen: float
    counted: float
    paid: float
    currency: str
    kind: str
    details: Mapping[str, Any]
    known: bool = True


def over_limit(facts: RefundFacts, limit: float) -> str:
    """Why a refund is refused under the policy's per-transaction limit."""
    return (
        f"Nothing was sent: the policy allows {limit:.2f} {facts.currency} of refunds per transaction. Already "
        f"refunded of transaction {show(facts.transaction)}: {facts.counted:.2f} (with refunds this server sent or "
        f"is sending); this refund: {facts.amount:.2f}. A person can raise limits.max_refund_amount."
    )


@dataclass
class Preview:
    """A plain-words account of a call: one line, the facts behind it, and what cannot be undone."""

    summary: str
    details: list[str] = field(default_factory=list)
    warning: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = [self.summary, *(f"- {d}" for d in self.details)]
        if self.warning:
            lines.append(self.warning)
        return "\n".join(lines)

    @classmethod
    def combine(cls, parts: Sequence[Preview]) -> Preview:
        if len(parts) == 1:
            return parts[0]
        summary = f"{len(parts)} Kartra commands in one request:"
        details = [f"{n}. {p.summary}" + "".join(f"\n   - {d}" for d in p.details) for n, p in enumerate(parts, 1)]
        warning = " ".join(dict.fromkeys(p.warning for p in parts if p.warning))
        return cls(summary, details, warning, {"commands": [p.facts for p in parts]})


def show(value: Any) -> str:
    """A value from data as one quoted line: JSON quoting, with every invisible or line-breaking character escaped."""
    dumped = json.dumps(value, ensure_ascii=False, default=str)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in dumped)


_CURRENCY = re.compile(r"[A-Z]{3}")
_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def _currency(value: Any) -> str:
    """An ISO currency code as is (three capitals cannot pose as anything); anything else quoted."""
    text = str(value or "")
    return text if _CURRENCY.fullmatch(text) else show(text)


def _key(name: Any) -> str:
    return str(name) if _NAME.fullmatch(str(name)) else show(str(name))


def _money(value: Any) -> float | None:
    """An amount as a number, or None when it is not a finite number."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return round(amount, 2) if math.isfinite(amount) else None


def _lead_label(lead: Mapping[str, Any]) -> str:
    if lead.get("email"):
        return show(str(lead["email"]))
    ident = lead.get("lead_id") or lead.get("id")
    return f"lead {show(str(ident))}" if ident else "(no lead given)"


def _person(first: Any, last: Any, email: Any) -> str:
    """A person as Kartra names them, raw: `show` it before it goes into a preview line."""
    name = " ".join(str(p) for p in (first, last) if p)
    return f"{name} <{email}>" if name else str(email or "unknown customer")


def unchecked(title: str, arguments: Mapping[str, Any], why: str) -> Preview:
    """The preview of a call whose facts could not be fetched: its arguments as given, and why."""
    return Preview(f"Run {show(title)} with {show(arguments)}", warning=f"{why} Check them before confirming.")


class Previewer:
    """Builds previews, reading what it needs through `read`."""

    def __init__(self, read: Reader, *, max_refund_amount: float | None = None, counted: Counted | None = None) -> None:
        self._read = read
        self._cap = max_refund_amount
        self._counted = counted or _as_seen

    async def preview(self, title: str, invocations: Sequence[Invocation], arguments: Mapping[str, Any]) -> Preview:
        """The preview of a call; raises `ActionDenied` when it must be refused before asking."""
        if not invocations:
            return Preview(
                f"Run the action {show(title)} with {show(arguments)}",
                warning="kartra-mcp does not know what this action does: read its arguments before confirming.",
            )
        parts = [await self._one(title, inv) for inv in invocations]
        return Preview.combine(parts)

    async def _one(self, title: str, inv: Invocation) -> Preview:
        if inv.cmd == "refund_transaction":
            return await self._refund(inv)
        if inv.cmd in ("cancel_transaction", "modify_subscription_status"):
            return await self._subscription(inv)
        if inv.cmd == "revoke_membership_access":
            return await self._revoke(inv)
        shown = {k: v for k, v in inv.params.items() if k not in ("cmd", "email", "lead_id", "id")}
        args = ", ".join(f"{_key(k)}={show(v)}" for k, v in shown.items())
        who = f" for {_lead_label(inv.lead)}" if inv.lead else ""
        does = DOES.get(inv.cmd)
        what = (
            f"{does} (Kartra command {inv.cmd})"
            if does
            else f"Unknown Kartra command {show(inv.cmd)}: kartra-mcp does not know what it does"
        )
        warning = "" if does else "Kartra may do anything with it: confirm only if you know this command."
        return Preview(
            f"{what}{who}" + (f": {args}" if args else ""), warning=warning, facts={"command": inv.cmd, **shown}
        )

    async def _fetch(self, cmd: str, params: Mapping[str, Any], lead: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return await self._read(cmd, params, lead)
        except KartraError as exc:
            raise ActionDenied(
                f"Nothing was sent: Kartra says {exc.message}{f' (type {exc.code})' if exc.code else ''}.",
                rule="account",
            ) from None

    async def refund_facts(self, inv: Invocation) -> RefundFacts:
        """What a refund would do, read fresh from Kartra; raises `ActionDenied` when it must be refused.

        Under a limit, what counts as already refunded is Kartra's figure raised by the refunds this
        server sent or is sending (`counted`), and the limit holds for the transaction, not the call.
        """
        tx_id = str(inv.params.get("transaction_id", "")).strip()
        details = (await self._fetch("get_transaction_details", {"transaction_id": tx_id}, {})).get(
            "transaction_details"
        ) or {}
        paid = _money(details.get("transaction_full_amount"))
        if paid is None and self._cap is not None:
            raise ActionDenied(
                f"Nothing was sent: the amount of transaction {show(tx_id)} cannot be read, so the refund "
                "cannot be checked against the policy's limit.",
                rule="cap",
            )
        amount = paid or 0.0
        currency = _currency(details.get("transaction_currency"))
        kind = str(details.get("transaction_type", ""))
        test = str(details.get("transaction_test", "0")) == "1"
        if kind not in ("sale", "rebill") or test:
            what = f"test {kind}" if test else kind or "transaction"
            raise ActionDenied(
                f"Nothing was sent: transaction {show(tx_id)} is a {show(what)}, and Kartra only refunds sales "
                "and rebills.",
                rule="account",
            )
        seen: float | None = None
        try:
            history = await self._read("retrieve_transactions_from_lead", {}, {"id": details.get("lead_id", "")})
            seen = round(
                sum(
                    _money(row.get("transaction_amount", row.get("transaction_full_amount"))) or 0.0
                    for row in history.get("transaction_list") or []
                    if str(row.get("transaction_parent_id")) == tx_id and row.get("transaction_type") in _REFUNDS
                ),
                2,
            )
        except (KartraError, MembraneError):
            if self._cap is not None:
                raise ActionDenied(
                    f"Nothing was sent: what was already refunded of transaction {show(tx_id)} cannot be read, so "
                    "the refund cannot be checked against the policy's limit per transaction. Try again shortly.",
                    rule="cap",
                ) from None
        refunded = None if seen is None else await self._counted(tx_id, seen)
        remaining = round(amount - (refunded or 0.0), 2)
        if refunded is not None and remaining <= 0:
            raise ActionDenied(
                f"Nothing was sent: transaction {show(tx_id)} is already refunded in full "
                f"({refunded:.2f} of {amount:.2f} {currency}).",
                rule="account",
            )
        raw_asked = inv.params.get("refund_amount")
        asked = _money(raw_asked)
        if raw_asked not in (None, "") and (asked is None or asked <= 0):
            raise ActionDenied(
                f"Nothing was sent: refund_amount {show(raw_asked)} is not an amount above 0.", rule="arguments"
            )
        refund = asked if asked is not None else remaining
        if asked is not None and refunded is not None and asked > remaining:
            raise ActionDenied(
                f"Nothing was sent: only {remaining:.2f} {currency} of transaction {show(tx_id)} is left to "
                f"refund, not {asked:.2f}.",
                rule="account",
            )
        facts = RefundFacts(
            tx_id, refund, seen or 0.0, refunded or 0.0, amount, currency, kind, details, known=seen is not None
        )
        if self._cap is not None and not round((refunded or 0.0) + refund, 2) <= self._cap:
            raise ActionDenied(over_limit(facts, self._cap), rule="cap")
        return facts

    async def _refund(self, inv: Invocation) -> Preview:
        facts = await self.refund_facts(inv)
        details, currency, refund, amount = facts.details, facts.currency, facts.amount, facts.paid
        checked = facts.known
        customer = _person(details.get("lead_first_name"), details.get("lead_last_name"), details.get("lead_email"))
        product = details.get("product_name", "?")
        point = details.get("product_price_point")
        already = f"{facts.counted:.2f} {currency}" if checked else "could not be checked"
        limit = f"; limit per transaction: {self._cap:.2f} {currency}" if self._cap is not None else ""
        return Preview(
            f"Refund {refund:.2f} {currency} to {show(customer)}",
            [
                f"Product: {show(product)}" + (f" ({show(point)})" if point else ""),
                f"Paid {amount:.2f} {currency} on {show(details.get('transaction_date', '?'))} "
                f"(transaction {show(facts.transaction)}, {facts.kind})",
                f"Already refunded: {already}; this refund: {refund:.2f} {currency}{limit}",
                f"Left to refund after this: {max(amount - facts.counted - refund, 0):.2f} {currency}"
                if checked
                else "Left to refund after this: unknown",
            ],
            "Money goes back to the customer. This cannot be undone.",
            {
                "transaction_id": facts.transaction,
                "refund_amount": refund,
                "currency": currency,
                "paid": amount,
                "already_refunded": facts.counted if checked else None,
                "limit_per_transaction": self._cap,
                "customer": customer,
                "product": product,
                "date": details.get("transaction_date"),
                "type": facts.kind,
            },
        )

    async def _subscription(self, inv: Invocation) -> Preview:
        params = inv.params
        sub_id = str(params.get("transaction_internal_subscription_id") or params.get("subscription_id") or "").strip()
        if not sub_id and params.get("transaction_id"):
            tx = (await self._fetch("get_transaction_details", {"transaction_id": params["transaction_id"]}, {})).get(
                "transaction_details"
            ) or {}
            sub_id = str(tx.get("transaction_internal_subscription_id") or "")
            if not sub_id:
                raise ActionDenied(
                    f"Nothing was sent: transaction {show(params['transaction_id'])} is not part of a "
                    "recurring subscription.",
                    rule="account",
                )
        details = (await self._fetch("get_subscription_details", {"subscription_id": sub_id}, {})).get(
            "subscription_details"
        ) or {}
        status = str(details.get("subscription_status", ""))
        change = "cancel" if inv.cmd == "cancel_transaction" else str(params.get("subscription_status_modification"))
        if status.casefold() in ("cancelled", "terminated"):
            raise ActionDenied(
                f"Nothing was sent: subscription {show(sub_id)} is already {status.casefold()}.", rule="account"
            )
        email = details.get("subscription_lead_email")
        customer = show(email) if email else f"lead {show(details.get('subscription_lead_id', '?'))}"
        price = f"{details.get('subscription_amount', '?')} {details.get('subscription_currency', '')}".strip()
        facts = {
            "subscription_id": sub_id,
            "change": change,
            "customer": customer,
            "status": status,
            "product": details.get("subscription_product_name") or details.get("subscription_product_id"),
            "price": price,
            "period": details.get("subscription_recurring_period"),
        }
        verb = {"cancel": "Cancel", "pause": "Pause", "unpause": "Resume"}.get(change, f"Change to {show(change)}:")
        warning = (
            "No further payments will be taken. A cancelled subscription cannot be resumed."
            if change == "cancel"
            else "Billing changes at once."
        )
        period = details.get("subscription_recurring_period")
        return Preview(
            f"{verb} subscription {show(sub_id)} of {customer}",
            [
                f"Product: {show(facts['product'])}",
                f"Price: {show(price)}" + (f" {show(period)}" if period else ""),
                f"Status now: {show(status)}; next payment: {show(details.get('subscription_next_payment_date', '?'))}",
            ],
            warning,
            facts,
        )

    async def _revoke(self, inv: Invocation) -> Preview:
        lead = await self._fetch("get_lead", {}, inv.lead)
        details = lead.get("lead_details") or {}
        wanted_id = str(inv.params.get("membership_id") or "")
        wanted_name = str(inv.params.get("membership_name") or "").casefold()
        level_filter = str(inv.params.get("level_name") or inv.params.get("level_id") or "").casefold()
        match = next(
            (
                m
                for m in details.get("memberships") or []
                if (wanted_id and str(m.get("membership_id")) == wanted_id)
                or (wanted_name and str(m.get("membership_name", m.get("name", ""))).casefold() == wanted_name)
            ),
            None,
        )
        who = _person(details.get("first_name"), details.get("last_name"), details.get("email"))
        if (
            match is None
            or str(match.get("active", "1")) != "1"
            or (
                level_filter
                and level_filter not in (str(match.get("level_name", "")).casefold(), str(match.get("level_id", "")))
            )
        ):
            raise ActionDenied(
                f"Nothing was sent: {show(who)} has no such membership access to revoke.", rule="account"
            )
        name = match.get("membership_name", match.get("name"))
        level = match.get("level_name", "?")
        return Preview(
            f"Remove the access of {show(who)} to the membership {show(name)} (level {show(level)})",
            [f"Lead id {show(details.get('id', '?'))}; membership id {show(match.get('membership_id', '?'))}"],
            "The lead loses access at once. Billing is not cancelled.",
            {"lead": who, "membership": name, "level": level},
        )
