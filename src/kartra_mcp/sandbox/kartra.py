"""Kartra's inbound API, run against a `KartraAccount`.

One call is one decoded form body (`phpform.decode`): an optional `lead` block naming the one lead
the call is about, an optional top-level `get_lead`, and `actions[N][cmd]` run in order. As Kartra
does, every outcome is HTTP 200: a failing command puts `{status: "Error", message, type}` in its
slot and stops the chain; a call that cannot start is an error at the top level.

Type codes follow Kartra's documentation. Commands Kartra does not document (membership grants
and revokes, product and membership listings) and the exact codes of custom-field creation are
this sandbox's own and marked so below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kartra_mcp.errors import KartraRefusal
from kartra_mcp.phpform import as_list
from kartra_mcp.sandbox.account import KartraAccount
from kartra_mcp.sandbox.model import (
    CHOICE_TYPES,
    PROFILE_FIELDS,
    CustomField,
    CustomFieldOption,
    Lead,
    Subscription,
    Transaction,
)

Result = dict[str, Any]
_Command = Callable[["KartraApi", Lead | None, Mapping[str, Any]], Result]

# Commands that need no lead block; their results go at the top level of the response.
_ACCOUNT_LISTINGS = frozenset(
    {
        "retrieve_account_lists",
        "retrieve_account_tags",
        "retrieve_account_sequences",
        "retrieve_account_pages",
        "retrieve_custom_fields",
        "retrieve_account_products",
        "retrieve_account_memberships",
    }
)
_ACCOUNT_COMMANDS = _ACCOUNT_LISTINGS | {
    "create_custom_field",
    "search_transaction",
    "get_transaction_details",
    "refund_transaction",
    "cancel_transaction",
    "search_subscription",
    "get_subscription_details",
    "modify_subscription_status",
}
_STEP = re.compile(r"^[A-Za-z0-9]+$")


def _ok(message: str, code: int) -> Result:
    return {"status": "Success", "message": message, "type": str(code)}


def _text(params: Mapping[str, Any], name: str) -> str:
    """A parameter as Kartra reads it: form values are text; JSON numbers and booleans are written out."""
    value = params.get(name, "")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def _money(value: float) -> str:
    return f"{value:.2f}"


class KartraApi:
    """Answers Kartra API calls from the state of one account."""

    def __init__(self, account: KartraAccount) -> None:
        self.account = account

    def handle(self, form: Mapping[str, Any]) -> Result:
        """Run one API call; always returns a Kartra response body."""
        try:
            return self._handle(form)
        except KartraRefusal as refusal:
            return refusal.body()

    def _handle(self, form: Mapping[str, Any]) -> Result:
        if "get_lead" in form:
            if not isinstance(form["get_lead"], Mapping):
                raise KartraRefusal(236, "'get_lead' not an array")
            return {"status": "Success", "lead_details": self._lead_details(self._find_lead(form["get_lead"], 234))}
        if "lead" in form and not isinstance(form["lead"], Mapping):
            raise KartraRefusal(223, "'lead' not an array")
        if "actions" not in form:
            raise KartraRefusal(254, "'cmd' is required")
        if not isinstance(form["actions"], Mapping | list):
            raise KartraRefusal(224, "'actions' not an array")
        actions = as_list(form["actions"])
        lead_block: Mapping[str, Any] = form.get("lead") or {}
        lead = self._subject(lead_block, actions)
        response: Result = {"status": "Success", "actions": []}
        for action in actions:
            cmd = action.get("cmd", "") if isinstance(action, Mapping) else ""
            if not cmd:
                response["actions"].append({"": {"status": "Error", "message": "'cmd' is required", "type": "254"}})
                break
            try:
                result = self._run(cmd, lead, lead_block, action)
            except KartraRefusal as refusal:
                response["actions"].append({cmd: refusal.body()})
                break
            if cmd == "create_lead":
                lead = self.account.leads[int(result["lead_details"]["id"])]
            if cmd in _ACCOUNT_LISTINGS:
                response.update(result)
                response["actions"].append({cmd: {"status": "Success"}})
            else:
                response["actions"].append({cmd: result})
        return response

    def _subject(self, lead_block: Mapping[str, Any], actions: list[Any]) -> Lead | None:
        """The lead the call is about, resolved once from the lead block (id wins over email)."""
        first = actions[0].get("cmd") if actions and isinstance(actions[0], Mapping) else None
        if first == "create_lead" or not (_text(lead_block, "id") or _text(lead_block, "email")):
            return None
        return self._find_lead(lead_block, 243)

    def _find_lead(self, block: Mapping[str, Any], not_found: int) -> Lead:
        lead_id, email = _text(block, "id"), _text(block, "email")
        if not lead_id and not email:
            raise KartraRefusal(206, "email or lead id is required. Nothing done")
        lead = None
        if lead_id:
            lead = self.account.leads.get(int(lead_id)) if lead_id.isdigit() else None
        else:
            lead = self.account.lead_by_email(email)
        if lead is None:
            raise KartraRefusal(not_found, "No lead found")
        if lead.deleted:
            raise KartraRefusal(245, "Lead is deleted")
        return lead

    def _run(self, cmd: str, lead: Lead | None, lead_block: Mapping[str, Any], params: Mapping[str, Any]) -> Result:
        if cmd == "create_lead":
            return self._create_lead(lead_block)
        command = _COMMANDS.get(cmd)
        if command is None:
            raise KartraRefusal(262, "App does not have permission to execute this CMD")
        if cmd not in _ACCOUNT_COMMANDS and lead is None:
            raise KartraRefusal(206, "email or lead id is required. Nothing done")
        if cmd == "edit_lead":
            params = {**lead_block, **params}
        return command(self, lead, params)

    # -- leads ----------------------------------------------------------------------------

    def _lead_details(self, lead: Lead) -> Result:
        account = self.account
        details: Result = {
            "id": str(lead.id),
            "email": lead.email,
            **{name: lead.profile.get(name, "") for name in PROFILE_FIELDS},
            "date_joined": lead.date_joined,
            "score": str(lead.score),
            "source": lead.source,
            "blacklisted": "1" if lead.blacklisted else "0",
            "custom_fields": [
                self._field_value(field, lead.custom_fields.get(field.identifier))
                for field in account.custom_fields.values()
            ],
            "tags": [{"tag_id": str(t), "tag_name": account.tags[t].name} for t in lead.tags],
            "lists": [
                {"list_id": str(k), "list_name": account.lists[k].name, "active": "1" if on else "0"}
                for k, on in lead.lists.items()
            ],
            "sequences": [
                {
                    "sequence_id": str(k),
                    "sequence_name": account.sequences[k].name,
                    "step": v["step"],
                    "status": "active" if v["active"] else "unsubscribed",
                }
                for k, v in lead.sequences.items()
            ],
            "memberships": [],
        }
        for membership_id, access in lead.memberships.items():
            membership = account.memberships[membership_id]
            level = next((lv for lv in membership.levels if lv.id == access["level_id"]), None)
            details["memberships"].append(
                {
                    "membership_id": str(membership_id),
                    "membership_name": membership.name,
                    "name": membership.name,
                    "level_id": str(access["level_id"]),
                    "level_name": level.name if level else "",
                    "active": "1" if access["active"] else "0",
                }
            )
        return details

    @staticmethod
    def _field_value(field: CustomField, value: str | list[str] | None) -> Result:
        if field.type in CHOICE_TYPES:
            chosen = value if isinstance(value, list) else []
            shown = [
                {"option_id": str(o.option_id), "option_value": o.option_value}
                for o in field.options
                if str(o.option_id) in chosen
            ]
            return {"field_identifier": field.identifier, "field_type": field.type, "field_value": shown}
        return {
            "field_identifier": field.identifier,
            "field_type": field.type,
            "field_value": value if isinstance(value, str) else "",
        }

    def _custom_field_values(self, block: Mapping[str, Any]) -> dict[str, str | list[str]]:
        """The custom field values a lead block sets, checked in full before anything changes."""
        values: dict[str, str | list[str]] = {}
        for item in as_list(block.get("custom_fields")):
            if not isinstance(item, Mapping) or "field_identifier" not in item:
                raise KartraRefusal(271, "Wrong custom field format")
            field = self.account.custom_field_named(str(item["field_identifier"]))
            if field is None:
                continue  # Kartra ignores unknown identifiers without a word.
            value = item.get("field_value", "")
            if field.type in CHOICE_TYPES:
                chosen = [str(v) for v in as_list(value)] if value != "" else []
                known = {str(o.option_id) for o in field.options}
                if any(c not in known for c in chosen) or (field.type != "checkbox" and len(chosen) > 1):
                    raise KartraRefusal(271, "Wrong custom field format")
                values[field.identifier] = chosen
            elif isinstance(value, str):
                values[field.identifier] = value
            else:
                raise KartraRefusal(271, "Wrong custom field format")
        return values

    @staticmethod
    def _apply_profile(lead: Lead, block: Mapping[str, Any], custom_fields: Mapping[str, str | list[str]]) -> None:
        for name in PROFILE_FIELDS:
            if name in block and isinstance(block[name], str):
                lead.profile[name] = block[name]
        lead.custom_fields.update(custom_fields)

    def _create_lead(self, block: Mapping[str, Any]) -> Result:
        email = _text(block, "email")
        if not email:
            raise KartraRefusal(206, "email or lead id is required. Nothing done")
        account = self.account
        if account.lead_by_email(email) is not None:
            raise KartraRefusal(244, "Lead already exists")
        custom_fields = self._custom_field_values(block)
        lead = Lead(id=account.new_id("lead"), email=email, date_joined=account.now(), source="api")
        self._apply_profile(lead, block, custom_fields)
        account.add(lead)
        return {"status": "Success", "message": "Lead created", "lead_details": {"id": str(lead.id)}}

    def _edit_lead(self, lead: Lead | None, block: Mapping[str, Any]) -> Result:
        assert lead is not None
        # A refused edit changes nothing: every check runs before the first change.
        new_email = _text(block, "new_email")
        changes_email = bool(new_email) and new_email.casefold() != lead.email.casefold()
        if changes_email and self.account.lead_by_email(new_email) is not None:
            raise KartraRefusal(244, "Lead already exists")
        custom_fields = self._custom_field_values(block)
        if changes_email:
            self.account.change_lead_email(lead, new_email)
        self._apply_profile(lead, block, custom_fields)
        self.account.save(lead)
        return {"status": "Success", "message": "Lead edited", "lead_details": {"id": str(lead.id)}}

    def _search_lead(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        return {"status": "Success", "message": "Lead found", "lead_details": self._lead_details(lead)}

    # -- tags, lists, sequences, points ----------------------------------------------------

    def _assign_tag(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name = _text(params, "tag_name")
        if not name:
            raise KartraRefusal(211, "Tag cannot be empty")
        tag = self.account.tag_named(name)
        if tag is None:
            raise KartraRefusal(212, "Tag does not exist")
        if tag.id not in lead.tags:
            lead.tags.append(tag.id)
            self.account.save(lead)
        return _ok("Tag added to lead", 103)

    def _unassign_tag(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name = _text(params, "tag_name")
        if not name:
            raise KartraRefusal(213, "Tag cannot be empty")
        tag = self.account.tag_named(name)
        if tag is None:
            raise KartraRefusal(214, "Tag does not exist")
        if tag.id in lead.tags:
            lead.tags.remove(tag.id)
            self.account.save(lead)
        return _ok("Tag removed from lead", 104)

    def _subscribe_list(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name = _text(params, "list_name")
        if not name:
            raise KartraRefusal(207, "List cannot be empty")
        found = self.account.list_named(name)
        if found is None:
            raise KartraRefusal(231, "List does not exist")
        lead.lists[found.id] = True
        self.account.save(lead)
        return _ok("Lead subscribed to list", 101)

    def _unsubscribe_list(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name = _text(params, "list_name")
        if not name:
            raise KartraRefusal(208, "List cannot be empty")
        found = self.account.list_named(name)
        if found is None:
            raise KartraRefusal(209, "List does not exist")
        if found.id in lead.lists:
            lead.lists[found.id] = False
            self.account.save(lead)
        return _ok("Lead unsubscribed from list", 101)

    def _points(self, lead: Lead | None, params: Mapping[str, Any], *, sign: int) -> Result:
        assert lead is not None
        raw = _text(params, "points")
        if not raw:
            raise KartraRefusal(215 if sign > 0 else 217, "Points cannot be empty")
        if not raw.lstrip("-").isdigit():
            raise KartraRefusal(227 if sign > 0 else 228, "Points is not a number")
        lead.score = max(0, lead.score + sign * int(raw))
        self.account.save(lead)
        return _ok("Points added to lead", 105) if sign > 0 else _ok("Points removed from lead", 106)

    def _subscribe_sequence(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name, step = _text(params, "sequence_name"), _text(params, "step")
        if not name:
            raise KartraRefusal(226, "Sequence cannot be empty")
        sequence = self.account.sequence_named(name)
        if sequence is None:
            raise KartraRefusal(219, "Sequence does not exist")
        if not step:
            raise KartraRefusal(225, "Step cannot be empty")
        if not _STEP.match(step):
            raise KartraRefusal(229, "Step has to be alphanumeric")
        if step not in sequence.steps:
            raise KartraRefusal(230, "Step does not exist")
        lead.sequences[sequence.id] = {"step": step, "active": True}
        self.account.save(lead)
        return _ok("Lead added to sequence", 107)

    def _unsubscribe_sequence(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        name = _text(params, "sequence_name")
        if not name:
            raise KartraRefusal(226, "Sequence cannot be empty")
        sequence = self.account.sequence_named(name)
        if sequence is None:
            raise KartraRefusal(220, "Sequence does not exist")
        if sequence.id in lead.sequences:
            lead.sequences[sequence.id]["active"] = False
            self.account.save(lead)
        return _ok("Lead removed from sequence", 108)

    # -- account listings and custom fields ------------------------------------------------

    def _retrieve(self, lead: Lead | None, params: Mapping[str, Any], *, cmd: str) -> Result:
        account = self.account
        match cmd:
            case "retrieve_account_lists":
                return {"account_lists": [x.name for x in account.lists.values()]}
            case "retrieve_account_tags":
                return {"account_tags": [x.name for x in account.tags.values()]}
            case "retrieve_account_sequences":
                return {"account_sequences": [x.name for x in account.sequences.values()]}
            case "retrieve_account_pages":
                return {
                    "account_pages": [
                        {"page_id": str(p.id), "page_name": p.name, "page_url": p.url, "page_category": p.category}
                        for p in account.pages.values()
                    ]
                }
            case "retrieve_custom_fields":
                return {
                    "custom_fields": [
                        {
                            "field_id": str(f.id),
                            "field_identifier": f.identifier,
                            "field_type": f.type,
                            "field_value": [
                                {"option_id": str(o.option_id), "option_value": o.option_value} for o in f.options
                            ],
                        }
                        for f in account.custom_fields.values()
                    ]
                }
            case "retrieve_account_products":
                return {
                    "account_products": [
                        {
                            "product_id": str(p.id),
                            "product_name": p.name,
                            "price_points": [
                                {
                                    "name": pp.name,
                                    "amount": _money(pp.amount),
                                    "currency": pp.currency,
                                    "recurring_period": pp.recurring_period or "one-time",
                                }
                                for pp in p.price_points
                            ],
                        }
                        for p in account.products.values()
                    ]
                }
            case _:
                return {
                    "account_memberships": [
                        {
                            "membership_id": str(m.id),
                            "membership_name": m.name,
                            "levels": [{"level_id": str(lv.id), "level_name": lv.name} for lv in m.levels],
                        }
                        for m in account.memberships.values()
                    ]
                }

    def _create_custom_field(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        # The codes of this command are documented only as a range (263-273); the sandbox's choice:
        identifier, kind = _text(params, "custom_field_identifier"), _text(params, "custom_field_type")
        if not identifier:
            raise KartraRefusal(263, "Custom field identifier cannot be empty")
        if not re.fullmatch(r"[A-Za-z0-9_]+", identifier):
            raise KartraRefusal(273, "Custom field identifier can contain only letters, digits and underscores")
        if self.account.custom_field_named(identifier) is not None:
            raise KartraRefusal(264, "Custom field identifier already exists")
        if kind not in ("input_field", "text_area", *CHOICE_TYPES):
            raise KartraRefusal(265, "Invalid custom field type")
        names = [
            str(o.get("option_name", "")).strip() if isinstance(o, Mapping) else str(o).strip()
            for o in as_list(params.get("custom_field_options"))
        ]
        if kind in CHOICE_TYPES:
            if not names:
                raise KartraRefusal(269, "Options are required for this custom field type")
            if len(names) < 2:
                raise KartraRefusal(270, "At least two options are required")
            if any(not n for n in names):
                raise KartraRefusal(272, "Option name cannot be empty")
        account = self.account
        field = CustomField(account.new_id("custom_field"), identifier, kind)
        if kind in CHOICE_TYPES:
            field.options = [CustomFieldOption(account.new_id("custom_field_option", 700), n) for n in names]
        account.add(field)
        return {**_ok("Custom Field created", 114), "field_id": str(field.id)}

    # -- transactions and subscriptions ----------------------------------------------------

    def _transaction(self, params: Mapping[str, Any]) -> Transaction:
        raw = _text(params, "transaction_id")
        found = self.account.transactions.get(int(raw)) if raw.isdigit() else None
        if found is None:
            raise KartraRefusal(247, "Transaction doesn't exist")
        return found

    def _transaction_details(self, tx: Transaction) -> Result:
        account = self.account
        lead = account.leads[tx.lead_id]
        product = account.products[tx.product_id]
        sub = account.subscriptions.get(tx.subscription_id) if tx.subscription_id else None
        return {
            "transaction_id": str(tx.id),
            "transaction_type": tx.type,
            "transaction_date": tx.date,
            "lead_id": str(lead.id),
            "lead_email": lead.email,
            "lead_first_name": lead.profile.get("first_name", ""),
            "lead_last_name": lead.profile.get("last_name", ""),
            "lead_country": lead.profile.get("country", ""),
            "product_id": str(product.id),
            "product_name": product.name,
            "product_price_point": tx.price_point,
            "transaction_quantity": str(tx.quantity),
            "transaction_full_amount": _money(tx.amount),
            "transaction_base_amount": _money(tx.amount),
            "transaction_tax": "0.00",
            "transaction_discount": "0.00",
            "transaction_shipping": "0.00",
            # Kartra refunds in the currency of the sale; the sandbox names it.
            "transaction_currency": tx.currency,
            "transaction_parent_id": str(tx.parent_id) if tx.parent_id else "",
            "transaction_subscription_id": sub.external_id if sub else "",
            "transaction_internal_subscription_id": str(sub.id) if sub else "",
            "transaction_last_4_card_digits": tx.last4,
            "transaction_test": "1" if tx.test else "0",
        }

    def _search_transaction(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        self._transaction(params)
        return {"status": "Success", "message": "Transaction exists"}

    def _get_transaction_details(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        return {"status": "Success", "transaction_details": self._transaction_details(self._transaction(params))}

    def _transactions_from_lead(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        return {
            "status": "Success",
            "transaction_list": [
                {
                    "transaction_id": str(t.id),
                    "lead_id": str(lead.id),
                    "lead_email": lead.email,
                    "transaction_type": t.type,
                    "transaction_date": t.date,
                    "transaction_amount": _money(t.amount),
                    "transaction_currency": t.currency,
                    "product_id": str(t.product_id),
                    "product_name": self.account.products[t.product_id].name,
                    "transaction_parent_id": str(t.parent_id) if t.parent_id else "",
                }
                for t in self.account.lead_transactions(lead.id)
            ],
        }

    def _refund(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        account = self.account
        tx = self._transaction(params)
        if tx.type not in ("sale", "rebill") or tx.test:
            raise KartraRefusal(253, "This type of transaction cannot be refunded or cancelled")
        remaining = round(tx.amount - account.refunded_amount(tx.id), 2)
        if remaining <= 0:
            raise KartraRefusal(251, "Transaction already refunded")
        raw = _text(params, "refund_amount")
        if raw:
            try:
                amount = round(float(raw), 2)
            except ValueError:
                raise KartraRefusal(268, "Invalid amount") from None
            if amount <= 0 or amount > remaining:
                raise KartraRefusal(268, "Invalid amount")
        else:
            amount = remaining
        kind = "refund" if amount == remaining and amount == tx.amount else "partial_refund"
        refund = Transaction(
            account.new_id("transaction"),
            kind,
            tx.lead_id,
            tx.product_id,
            tx.price_point,
            amount,
            tx.currency,
            account.now(),
            parent_id=tx.id,
            subscription_id=tx.subscription_id,
        )
        account.add(refund)
        return {
            "status": "Success",
            "transaction_refunded": str(tx.id),
            "refund_transaction_id": str(refund.id),
            "refund_amount": _money(amount),
            "refund_currency": tx.currency,
        }

    def _subscription(self, raw: str) -> Subscription:
        found = self.account.subscriptions.get(int(raw)) if raw.isdigit() else None
        if found is None:
            raise KartraRefusal(248, "Subscription doesn't exist")
        return found

    def _subscription_details(self, sub: Subscription) -> Result:
        product = self.account.products[sub.product_id]
        return {
            "subscription_id": str(sub.id),
            "subscription_external_id": sub.external_id,
            "subscription_product_id": str(sub.product_id),
            "subscription_product_name": product.name,
            "subscription_price_point": sub.price_point,
            "subscription_lead_id": str(sub.lead_id),
            "subscription_lead_email": self.account.leads[sub.lead_id].email,
            "subscription_start_date": sub.start_date,
            "subscription_end_date": sub.end_date,
            "subscription_current_installment": str(sub.current_installment),
            "subscription_installments_left": sub.installments_left,
            "subscription_recurring_period": sub.period,
            "subscription_status": sub.status,
            "subscription_amount": _money(sub.amount),
            "subscription_currency": sub.currency,
            "subscription_next_payment_date": sub.next_payment_date if sub.status == "Active" else "N/A",
            "subscription_next_scheduled_payment_amount": _money(sub.amount) if sub.status == "Active" else "N/A",
            "subscription_paypal": "1" if sub.paypal else "0",
        }

    def _cancel(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        account = self.account
        internal = _text(params, "transaction_internal_subscription_id") or _text(params, "subscription_id")
        external = _text(params, "transaction_subscription_id")
        sub: Subscription | None
        if internal:
            sub = self._subscription(internal)
        elif external:
            # The processor's id is not indexed: Kartra's docs name this lookup but nothing relies on its speed.
            sub = next((s for s in account.subscriptions.values() if s.external_id == external), None)
        else:
            tx = self._transaction(params)
            if tx.test:
                raise KartraRefusal(253, "This type of transaction cannot be refunded or cancelled")
            if tx.subscription_id is None:
                raise KartraRefusal(249, "Transaction not linked to any recurring subscription")
            sub = self._subscription(str(tx.subscription_id))
        if sub is None:
            raise KartraRefusal(248, "Subscription doesn't exist")
        if sub.status == "Cancelled":
            raise KartraRefusal(252, "Subscription already cancelled")
        self._end(sub)
        return {
            "status": "Success",
            "transaction_subscription_id": sub.external_id,
            "transaction_internal_subscription_id": str(sub.id),
        }

    def _end(self, sub: Subscription) -> None:
        account = self.account
        sub.status = "Cancelled"
        sub.end_date = account.now()
        sub.next_payment_date = "0000-00-00 00:00:00"
        account.save(sub)
        account.add(
            Transaction(
                account.new_id("transaction"),
                "cancellation",
                sub.lead_id,
                sub.product_id,
                sub.price_point,
                0.0,
                sub.currency,
                account.now(),
                subscription_id=sub.id,
            )
        )

    def _search_subscription(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        self._subscription(_text(params, "subscription_id"))
        return {"status": "Success", "message": "Subscription exists"}

    def _get_subscription_details(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        sub = self._subscription(_text(params, "subscription_id"))
        return {"status": "Success", "subscription_details": self._subscription_details(sub)}

    def _subscriptions_from_lead(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        return {
            "status": "Success",
            "subscriptions_list": [
                {
                    "subscription_id": str(s.id),
                    "lead_id": str(lead.id),
                    "lead_email": lead.email,
                    "subscription_status": s.status,
                    "product_id": str(s.product_id),
                    "product_name": self.account.products[s.product_id].name,
                    "subscription_amount": _money(s.amount),
                    "subscription_currency": s.currency,
                    "subscription_recurring_period": s.period,
                }
                for s in self.account.lead_subscriptions(lead.id)
            ],
        }

    def _modify_subscription(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        # Kartra documents 274, 275 and 284 for this command without their texts; the sandbox's wording:
        sub = self._subscription(_text(params, "subscription_id"))
        change = _text(params, "subscription_status_modification")
        if change not in ("cancel", "pause", "unpause"):
            raise KartraRefusal(274, "subscription_status_modification must be cancel, pause or unpause")
        if sub.status == "Cancelled":
            raise KartraRefusal(275, "Cancelled or terminated subscriptions cannot be modified")
        if sub.paypal and change != "cancel":
            raise KartraRefusal(284, "PayPal subscriptions can only be cancelled")
        if change == "cancel":
            self._end(sub)
        else:
            wanted = "Paused" if change == "pause" else "Active"
            if sub.status == wanted:
                raise KartraRefusal(274, f"Subscription is already {wanted.lower()}")
            sub.status = wanted
            self.account.save(sub)
        return _ok("Subscription modified", 115)

    # -- memberships (not in Kartra's documented API; the sandbox's own commands) ------------

    def _membership_target(self, params: Mapping[str, Any]) -> tuple[int, int | None]:
        account = self.account
        ident, name = _text(params, "membership_id"), _text(params, "membership_name")
        if not ident and not name:
            raise KartraRefusal(291, "Membership cannot be empty")
        membership = (
            (account.memberships.get(int(ident)) if ident.isdigit() else None)
            if ident
            else account.membership_named(name)
        )
        if membership is None:
            raise KartraRefusal(291, "Membership does not exist")
        level_ident, level_name = _text(params, "level_id"), _text(params, "level_name")
        if not level_ident and not level_name:
            return membership.id, None
        level = next(
            (
                lv
                for lv in membership.levels
                if (level_ident and str(lv.id) == level_ident)
                or (not level_ident and lv.name.casefold() == level_name.casefold())
            ),
            None,
        )
        if level is None:
            raise KartraRefusal(292, "Level does not exist in this membership")
        return membership.id, level.id

    def _grant_membership(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        membership_id, level_id = self._membership_target(params)
        if level_id is None:
            raise KartraRefusal(292, "Level cannot be empty")
        lead.memberships[membership_id] = {"level_id": level_id, "active": True, "granted_at": self.account.now()}
        self.account.save(lead)
        return _ok("Membership access granted", 116)

    def _revoke_membership(self, lead: Lead | None, params: Mapping[str, Any]) -> Result:
        assert lead is not None
        membership_id, level_id = self._membership_target(params)
        access = lead.memberships.get(membership_id)
        if access is None or not access["active"] or (level_id is not None and access["level_id"] != level_id):
            raise KartraRefusal(293, "Lead has no such membership access to revoke")
        access["active"] = False
        self.account.save(lead)
        return _ok("Membership access revoked", 117)


def _listing(cmd: str) -> _Command:
    return lambda api, lead, params: api._retrieve(lead, params, cmd=cmd)


_COMMANDS: dict[str, _Command] = {
    "edit_lead": KartraApi._edit_lead,
    "search_lead": KartraApi._search_lead,
    "assign_tag": KartraApi._assign_tag,
    "unassign_tag": KartraApi._unassign_tag,
    "subscribe_lead_to_list": KartraApi._subscribe_list,
    "unsubscribe_lead_from_list": KartraApi._unsubscribe_list,
    "give_points_to_lead": lambda api, lead, params: api._points(lead, params, sign=1),
    "remove_points_from_lead": lambda api, lead, params: api._points(lead, params, sign=-1),
    "subscribe_lead_to_sequence_at_step": KartraApi._subscribe_sequence,
    "unsubscribe_lead_from_sequence": KartraApi._unsubscribe_sequence,
    "create_custom_field": KartraApi._create_custom_field,
    "search_transaction": KartraApi._search_transaction,
    "get_transaction_details": KartraApi._get_transaction_details,
    "retrieve_transactions_from_lead": KartraApi._transactions_from_lead,
    "refund_transaction": KartraApi._refund,
    "cancel_transaction": KartraApi._cancel,
    "search_subscription": KartraApi._search_subscription,
    "get_subscription_details": KartraApi._get_subscription_details,
    "retrieve_subscriptions_from_lead": KartraApi._subscriptions_from_lead,
    "modify_subscription_status": KartraApi._modify_subscription,
    "grant_membership_access": KartraApi._grant_membership,
    "revoke_membership_access": KartraApi._revoke_membership,
    **{cmd: _listing(cmd) for cmd in _ACCOUNT_LISTINGS},
}

COMMANDS: frozenset[str] = frozenset({*_COMMANDS, "create_lead"})
"""Every `cmd` this sandbox answers."""
