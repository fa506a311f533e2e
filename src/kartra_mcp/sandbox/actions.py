"""The sandbox's Kartra action catalog, as Membrane lists it.

Each action has Membrane's shape (key, name, description, type, `inputSchema`, `outputSchema` for
reads) and knows how to turn its input into a Kartra API call and Kartra's answer into its output.
The schemas carry Membrane's quirks on purpose, so clients are tested against them for real:
extra keys (`referenceCollection`, `isImplied`, `isSensitive`), arrays without `items`, a `$ref`
into `definitions`, and one action with no `inputSchema` at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]
Form = dict[str, Any]


@dataclass(frozen=True)
class ActionDef:
    """One Membrane action over Kartra."""

    key: str
    name: str
    description: str
    type: str
    build: Callable[[Mapping[str, Any]], Form]
    pick: Callable[[dict[str, Any]], Any]
    input_schema: Schema | None = None
    output_schema: Schema | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return object_id("action", self.key)


def object_id(kind: str, name: str) -> str:
    """A stable 24-hex id, shaped like Membrane's ObjectIds."""
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:24]


# -- schema helpers ------------------------------------------------------------------------


def _s(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _obj(properties: Mapping[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties), **extra}
    if required:
        schema["required"] = list(required)
    return schema


_LEAD_KEYS: dict[str, Schema] = {
    "email": _s(
        "Email address of the lead. Give this or lead_id.",
        format="email",
        referenceCollection={"key": "leads"},
    ),
    "lead_id": _s("Kartra's id of the lead. Give this or email.", isImplied=True),
}
_STATUS: Schema = _s("Success or Error.", enum=["Success", "Error"])
_MESSAGE: Schema = _s("What Kartra did, in words.")
_TYPE: Schema = _s("Kartra's numeric message type.")
_ACK = _obj({"status": _STATUS, "message": _MESSAGE, "type": _TYPE})

_PROFILE: dict[str, Schema] = {
    "first_name": _s("First name."),
    "middle_name": _s("Middle name."),
    "last_name": _s("Last name."),
    "last_name2": _s("Second last name."),
    "phone_country_code": _s("Phone country code, such as +1."),
    "phone": _s("Phone number without the country code."),
    "ip": _s("IP address the lead signed up from."),
    "address": _s("Street address."),
    "zip": _s("Postal code."),
    "city": _s("City."),
    "state": _s("State or region."),
    "country": _s("Country (ISO code or name)."),
    "company": _s("Company."),
    "lead_picture": _s("URL of the lead's picture.", format="uri"),
    "website": _s("Website URL.", format="uri"),
    "facebook": _s("Facebook profile URL."),
    "twitter": _s("Twitter/X handle or URL."),
    "linkedin": _s("LinkedIn profile URL."),
    "lead_preferred_time_zone": _s("Preferred time zone, such as America/New_York."),
    "sales_tax_id": _s("Sales tax (VAT) id.", isSensitive=True),
    "business_type": _s("Business type, as Kartra's number for it."),
    "custom_fields": {
        "type": "array",
        "description": "Custom field values to set. Unknown identifiers are ignored by Kartra.",
        "items": {"$ref": "#/definitions/customFieldValue"},
    },
}
_DEFINITIONS: Schema = {
    "customFieldValue": _obj(
        {
            "field_identifier": _s("The custom field's identifier (see retrieve-account-custom-fields)."),
            "field_value": {
                "description": "Text for input_field/text_area; an option id for drop_down/radio_button; "
                "a list of option ids for checkbox. An empty string clears the value.",
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
        },
        ("field_identifier", "field_value"),
    )
}

_LEAD_DETAILS = _obj(
    {
        "id": _s("Lead id."),
        "email": _s("Email address."),
        **{k: v for k, v in _PROFILE.items() if k != "custom_fields"},
        "notes": _s("Notes."),
        "date_joined": _s("When the lead joined (EST)."),
        "score": _s("Points."),
        "source": _s("How the lead arrived."),
        "blacklisted": _s("1 when blacklisted."),
        "custom_fields": {"type": "array", "description": "Custom field values."},
        "tags": {"type": "array", "description": "Tags: tag_id, tag_name."},
        "lists": {"type": "array", "description": "Lists: list_id, list_name, active (0/1)."},
        "sequences": {"type": "array", "description": "Sequences: sequence_id, sequence_name, step, status."},
        "memberships": {
            "type": "array",
            "description": "Membership access: membership_id, membership_name, level_id, level_name, active.",
        },
    }
)
_TRANSACTION_DETAILS = _obj(
    {
        name: _s(text)
        for name, text in (
            ("transaction_id", "Transaction id."),
            ("transaction_type", "sale, rebill, refund, partial_refund, chargeback, cancellation."),
            ("transaction_date", "When (EST)."),
            ("lead_id", "The customer's lead id."),
            ("lead_email", "The customer's email."),
            ("lead_first_name", "First name."),
            ("lead_last_name", "Last name."),
            ("lead_country", "Country."),
            ("product_id", "Product id."),
            ("product_name", "Product name."),
            ("product_price_point", "Price point."),
            ("transaction_quantity", "Quantity."),
            ("transaction_full_amount", "Amount charged."),
            ("transaction_base_amount", "Amount before tax, discount and shipping."),
            ("transaction_tax", "Tax."),
            ("transaction_discount", "Discount."),
            ("transaction_shipping", "Shipping."),
            ("transaction_currency", "Currency."),
            ("transaction_parent_id", "For refunds: the original transaction."),
            ("transaction_subscription_id", "The processor's subscription id, if recurring."),
            ("transaction_internal_subscription_id", "Kartra's subscription id, if recurring."),
            ("transaction_last_4_card_digits", "Last four card digits."),
            ("transaction_test", "1 for a test transaction."),
        )
    }
)
_SUBSCRIPTION_DETAILS = _obj(
    {
        name: _s(text)
        for name, text in (
            ("subscription_id", "Kartra's subscription id."),
            ("subscription_external_id", "The processor's subscription id."),
            ("subscription_product_id", "Product id."),
            ("subscription_product_name", "Product name."),
            ("subscription_price_point", "Price point."),
            ("subscription_lead_id", "The subscriber's lead id."),
            ("subscription_lead_email", "The subscriber's email."),
            ("subscription_start_date", "Start (EST)."),
            ("subscription_end_date", "End (EST), 0000-00-00 00:00:00 while running."),
            ("subscription_current_installment", "Payments made."),
            ("subscription_installments_left", "Payments left, or 'Until cancelled'."),
            ("subscription_recurring_period", "How often it bills."),
            ("subscription_status", "Active, Paused or Cancelled."),
            ("subscription_amount", "Amount per period."),
            ("subscription_currency", "Currency."),
            ("subscription_next_payment_date", "Next payment (EST), or N/A."),
            ("subscription_next_scheduled_payment_amount", "Next amount, or N/A."),
            ("subscription_paypal", "1 when billed through PayPal (can only be cancelled)."),
        )
    }
)

# -- how actions become Kartra calls ------------------------------------------------------------


def _lead_block(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("lead_id"):
        return {"id": str(data["lead_id"])}
    if data.get("email"):
        return {"email": data["email"]}
    return {}


def _lead_command(cmd: str, *params: str) -> Callable[[Mapping[str, Any]], Form]:
    def build(data: Mapping[str, Any]) -> Form:
        action = {"cmd": cmd, **{p: data[p] for p in params if p in data}}
        return {"lead": _lead_block(data), "actions": [action]}

    return build


def _account_command(cmd: str, *params: str) -> Callable[[Mapping[str, Any]], Form]:
    def build(data: Mapping[str, Any]) -> Form:
        return {"actions": [{"cmd": cmd, **{p: data[p] for p in params if p in data}}]}

    return build


def _lead_write(cmd: str) -> Callable[[Mapping[str, Any]], Form]:
    def build(data: Mapping[str, Any]) -> Form:
        lead = {k: v for k, v in data.items() if k not in ("lead_id",)}
        if data.get("lead_id"):
            lead["id"] = str(data["lead_id"])
        return {"lead": lead, "actions": [{"cmd": cmd}]}

    return build


def _slot(cmd: str) -> Callable[[dict[str, Any]], Any]:
    """Kartra's answer for the one command of the call (or the call's own error)."""

    def pick(response: dict[str, Any]) -> Any:
        for entry in response.get("actions") or ():
            if cmd in entry:
                return entry[cmd]
        return response

    return pick


def _top(response: dict[str, Any]) -> Any:
    """Account listings answer at the top level; drop the per-command acknowledgements."""
    return {k: v for k, v in response.items() if k != "actions"}


def _whole(response: dict[str, Any]) -> Any:
    return response


def _listing(key: str, noun: str, cmd: str, field_name: str, item: Schema, *, no_input: bool = False) -> ActionDef:
    output = _obj(
        {"status": _STATUS, field_name: {"type": "array", "description": f"The account's {noun}.", "items": item}}
    )
    return ActionDef(
        key=key,
        name=f"Retrieve Account {noun.title()}",
        description=f"List all {noun} in the Kartra account.",
        type="api-request-to-external-app",
        build=_account_command(cmd),
        pick=_top,
        input_schema=None if no_input else _obj({}),
        output_schema=output,
    )


def _lead_action(
    key: str,
    name: str,
    description: str,
    cmd: str,
    params: dict[str, Schema],
    required: tuple[str, ...] = (),
    *,
    kind: str = "api-request-to-external-app",
) -> ActionDef:
    return ActionDef(
        key=key,
        name=name,
        description=description,
        type=kind,
        build=_lead_command(cmd, *params),
        pick=_slot(cmd),
        input_schema=_obj({**_LEAD_KEYS, **params}, required),
        output_schema=None,
    )


_PAGE = _obj(
    {"page_id": _s("Page id."), "page_name": _s("Name."), "page_url": _s("URL."), "page_category": _s("Category.")}
)
_NAME = _s("Name.")

CATALOG: tuple[ActionDef, ...] = (
    # -- reads ---------------------------------------------------------------------------
    _listing("retrieve-account-pages", "pages", "retrieve_account_pages", "account_pages", _PAGE, no_input=True),
    ActionDef(
        key="retrieve-account-custom-fields",
        name="Retrieve Account Custom Fields",
        description="List the account's custom fields with their identifiers, types and, for choice fields, "
        "the option ids to use when setting them.",
        type="api-request-to-external-app",
        build=_account_command("retrieve_custom_fields"),
        pick=_top,
        input_schema=_obj({}),
        output_schema=_obj(
            {
                "status": _STATUS,
                "custom_fields": {
                    "type": "array",
                    "description": "Custom fields: field_id, field_identifier, field_type, field_value "
                    "(the options of choice fields).",
                },
            }
        ),
    ),
    _listing("retrieve-account-sequences", "sequences", "retrieve_account_sequences", "account_sequences", _NAME),
    _listing("retrieve-account-tags", "tags", "retrieve_account_tags", "account_tags", _NAME),
    _listing("retrieve-account-lists", "lists", "retrieve_account_lists", "account_lists", _NAME),
    _listing(
        "retrieve-account-products",
        "products",
        "retrieve_account_products",
        "account_products",
        _obj(
            {
                "product_id": _s("Product id."),
                "product_name": _s("Name."),
                "price_points": {"type": "array", "description": "name, amount, currency, recurring_period."},
            }
        ),
    ),
    _listing(
        "retrieve-account-memberships",
        "memberships",
        "retrieve_account_memberships",
        "account_memberships",
        _obj(
            {
                "membership_id": _s("Membership id."),
                "membership_name": _s("Name."),
                "levels": {"type": "array", "description": "level_id, level_name."},
            }
        ),
    ),
    ActionDef(
        key="get-lead",
        name="Get Lead",
        description="Get a lead's full profile by email or lead id: contact details, points, custom fields, "
        "tags, lists, sequences and membership access.",
        type="find-data-record-by-id",
        build=lambda data: {"get_lead": _lead_block(data)},
        pick=_whole,
        input_schema=_obj(_LEAD_KEYS),
        output_schema=_obj({"status": _STATUS, "lead_details": _LEAD_DETAILS}),
    ),
    ActionDef(
        key="search-lead",
        name="Search Lead",
        description="Check whether a lead exists and get its profile, by email or lead id.",
        type="search-data-record",
        build=_lead_command("search_lead"),
        pick=_slot("search_lead"),
        input_schema=_obj(_LEAD_KEYS),
        output_schema=_obj({"status": _STATUS, "message": _MESSAGE, "lead_details": _LEAD_DETAILS}),
    ),
    ActionDef(
        key="get-transaction-details",
        name="Get Transaction Details",
        description="Get one payment transaction: customer, product, amount, currency, date, type and the "
        "subscription it belongs to.",
        type="api-request-to-external-app",
        build=_account_command("get_transaction_details", "transaction_id"),
        pick=_slot("get_transaction_details"),
        input_schema=_obj({"transaction_id": _s("Kartra's transaction id.")}, ("transaction_id",)),
        output_schema=_obj({"status": _STATUS, "transaction_details": _TRANSACTION_DETAILS}),
    ),
    ActionDef(
        key="search-transaction",
        name="Search Transaction",
        description="Check whether a transaction id exists.",
        type="api-request-to-external-app",
        build=_account_command("search_transaction", "transaction_id"),
        pick=_slot("search_transaction"),
        input_schema=_obj({"transaction_id": _s("Kartra's transaction id.")}, ("transaction_id",)),
        output_schema=_obj({"status": _STATUS, "message": _MESSAGE}),
    ),
    ActionDef(
        key="retrieve-transactions-from-lead",
        name="Retrieve Transactions From Lead",
        description="List a lead's payment transactions: sales, rebills, refunds, chargebacks and cancellations.",
        type="list-data-records",
        build=_lead_command("retrieve_transactions_from_lead"),
        pick=_slot("retrieve_transactions_from_lead"),
        input_schema=_obj(_LEAD_KEYS),
        output_schema=_obj(
            {
                "status": _STATUS,
                "transaction_list": {
                    "type": "array",
                    "description": "Transactions.",
                    "items": _obj(
                        {
                            n: _s(n.replace("_", " ").capitalize() + ".")
                            for n in (
                                "transaction_id",
                                "lead_id",
                                "lead_email",
                                "transaction_type",
                                "transaction_date",
                                "transaction_amount",
                                "transaction_currency",
                                "product_id",
                                "product_name",
                                "transaction_parent_id",
                            )
                        }
                    ),
                },
            }
        ),
    ),
    ActionDef(
        key="get-subscription-details",
        name="Get Subscription Details",
        description="Get one recurring subscription: subscriber, product, amount, period, status and next payment.",
        type="api-request-to-external-app",
        build=_account_command("get_subscription_details", "subscription_id"),
        pick=_slot("get_subscription_details"),
        input_schema=_obj({"subscription_id": _s("Kartra's subscription id.")}, ("subscription_id",)),
        output_schema=_obj({"status": _STATUS, "subscription_details": _SUBSCRIPTION_DETAILS}),
    ),
    ActionDef(
        key="search-subscription",
        name="Search Subscription",
        description="Check whether a subscription id exists.",
        type="api-request-to-external-app",
        build=_account_command("search_subscription", "subscription_id"),
        pick=_slot("search_subscription"),
        input_schema=_obj({"subscription_id": _s("Kartra's subscription id.")}, ("subscription_id",)),
        output_schema=_obj({"status": _STATUS, "message": _MESSAGE}),
    ),
    ActionDef(
        key="retrieve-subscriptions-from-lead",
        name="Retrieve Subscriptions From Lead",
        description="List a lead's recurring subscriptions with their status.",
        type="list-data-records",
        build=_lead_command("retrieve_subscriptions_from_lead"),
        pick=_slot("retrieve_subscriptions_from_lead"),
        input_schema=_obj(_LEAD_KEYS),
        output_schema=_obj(
            {"status": _STATUS, "subscriptions_list": {"type": "array", "description": "Subscriptions."}}
        ),
    ),
    # -- writes --------------------------------------------------------------------------
    ActionDef(
        key="create-lead",
        name="Create Lead",
        description="Create a new lead. Kartra never updates an existing lead here: an email that already "
        "exists is refused (use edit-lead).",
        type="create-data-record",
        build=_lead_write("create_lead"),
        pick=_slot("create_lead"),
        input_schema={
            **_obj({"email": _s("Email address of the new lead.", format="email"), **_PROFILE}, ("email",)),
            "definitions": _DEFINITIONS,
        },
    ),
    ActionDef(
        key="edit-lead",
        name="Edit Lead",
        description="Overwrite fields of an existing lead, found by lead_id or email. Only the fields given "
        "change; new_email changes the address.",
        type="update-data-record",
        build=_lead_write("edit_lead"),
        pick=_slot("edit_lead"),
        input_schema={
            **_obj({**_LEAD_KEYS, "new_email": _s("A new email address for the lead.", format="email"), **_PROFILE}),
            "definitions": _DEFINITIONS,
        },
    ),
    _lead_action(
        "assign-tag",
        "Assign Tag",
        "Add an existing tag to a lead (see retrieve-account-tags).",
        "assign_tag",
        {"tag_name": _s("Name of the tag.", referenceCollection={"key": "tags"})},
        ("tag_name",),
    ),
    _lead_action(
        "subscribe-lead-to-list",
        "Subscribe Lead to List",
        "Subscribe a lead to a list.",
        "subscribe_lead_to_list",
        {"list_name": _s("Name of the list.", referenceCollection={"key": "lists"})},
        ("list_name",),
    ),
    _lead_action(
        "subscribe-lead-to-sequence",
        "Subscribe Lead to Sequence",
        "Subscribe a lead to an email sequence, starting at a specific step.",
        "subscribe_lead_to_sequence_at_step",
        {"sequence_name": _s("Name of the sequence."), "step": _s("The step's box number, such as 1.")},
        ("sequence_name", "step"),
    ),
    _lead_action(
        "give-points-to-lead",
        "Give Points to Lead",
        "Add points to a lead's score.",
        "give_points_to_lead",
        {
            "points": {"type": "integer", "minimum": 1, "description": "Points to add."},
            "expiration": {"type": "integer", "minimum": 0, "description": "Days until the points expire; 0 never."},
        },
        ("points",),
    ),
    ActionDef(
        key="create-custom-field",
        name="Create Custom Field",
        description="Create a custom field for leads. Choice types need at least two options.",
        type="api-request-to-external-app",
        build=lambda data: {
            "actions": [
                {
                    "cmd": "create_custom_field",
                    "custom_field_identifier": data.get("custom_field_identifier", ""),
                    "custom_field_type": data.get("custom_field_type", ""),
                    "custom_field_options": [{"option_name": o} for o in data.get("custom_field_options") or []],
                }
            ]
        },
        pick=_slot("create_custom_field"),
        input_schema=_obj(
            {
                "custom_field_identifier": _s("Identifier: letters, digits and underscores."),
                "custom_field_type": _s(
                    "Field type.", enum=["input_field", "text_area", "drop_down", "radio_button", "checkbox"]
                ),
                "custom_field_options": {"type": "array", "description": "Option names, for choice types."},
            },
            ("custom_field_identifier", "custom_field_type"),
        ),
    ),
    _lead_action(
        "grant-membership-access",
        "Grant Membership Access",
        "Give a lead access to a membership site at a level (see retrieve-account-memberships).",
        "grant_membership_access",
        {
            "membership_name": _s("Name of the membership site."),
            "membership_id": _s("Or its id."),
            "level_name": _s("Name of the level."),
            "level_id": _s("Or its id."),
        },
    ),
    # -- removals ------------------------------------------------------------------------
    _lead_action(
        "unassign-tag",
        "Unassign Tag",
        "Remove a tag from a lead. May trigger 'tag removed' automations.",
        "unassign_tag",
        {"tag_name": _s("Name of the tag.", referenceCollection={"key": "tags"})},
        ("tag_name",),
    ),
    _lead_action(
        "unsubscribe-lead-from-list",
        "Unsubscribe Lead From List",
        "Unsubscribe a lead from a list.",
        "unsubscribe_lead_from_list",
        {"list_name": _s("Name of the list.", referenceCollection={"key": "lists"})},
        ("list_name",),
    ),
    _lead_action(
        "unsubscribe-lead-from-sequence",
        "Unsubscribe Lead From Sequence",
        "Stop a sequence for a lead. Re-subscribing starts again; progress is lost.",
        "unsubscribe_lead_from_sequence",
        {"sequence_name": _s("Name of the sequence.")},
        ("sequence_name",),
    ),
    _lead_action(
        "remove-points-from-lead",
        "Remove Points From Lead",
        "Take points off a lead's score.",
        "remove_points_from_lead",
        {"points": {"type": "integer", "minimum": 1, "description": "Points to remove."}},
        ("points",),
    ),
    # -- money, billing and paid access --------------------------------------------------
    ActionDef(
        key="cancel-subscription",
        name="Cancel Subscription",
        description="Cancel a recurring subscription, by one of its transactions or by its subscription id. "
        "No further payments are taken; a cancelled subscription cannot be resumed.",
        type="api-request-to-external-app",
        build=_account_command("cancel_transaction", "transaction_id", "transaction_internal_subscription_id"),
        pick=_slot("cancel_transaction"),
        input_schema=_obj(
            {
                "transaction_id": _s("A transaction of the subscription."),
                "transaction_internal_subscription_id": _s("Or Kartra's subscription id."),
            }
        ),
    ),
    ActionDef(
        key="refund-transaction",
        name="Refund Transaction",
        description="Refund a sale or rebill, fully or in part, in the currency it was paid in. Money goes "
        "back to the customer and cannot be taken again.",
        type="api-request-to-external-app",
        build=_account_command("refund_transaction", "transaction_id", "refund_amount"),
        pick=_slot("refund_transaction"),
        input_schema=_obj(
            {
                "transaction_id": _s("The transaction to refund."),
                "refund_amount": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Amount to refund; leave out to refund everything not yet refunded.",
                },
            },
            ("transaction_id",),
        ),
    ),
    _lead_action(
        "revoke-membership-access",
        "Revoke Membership Access",
        "Remove a lead's access to a membership site. Billing is not cancelled.",
        "revoke_membership_access",
        {
            "membership_name": _s("Name of the membership site."),
            "membership_id": _s("Or its id."),
            "level_name": _s("Only if the lead has this level."),
            "level_id": _s("Or its id."),
        },
    ),
    ActionDef(
        key="modify-subscription-status",
        name="Modify Subscription Status",
        description="Pause, unpause or cancel a recurring subscription. PayPal subscriptions can only be cancelled.",
        type="api-request-to-external-app",
        build=_account_command("modify_subscription_status", "subscription_id", "subscription_status_modification"),
        pick=_slot("modify_subscription_status"),
        input_schema=_obj(
            {
                "subscription_id": _s("Kartra's subscription id."),
                "subscription_status_modification": _s("What to do.", enum=["pause", "unpause", "cancel"]),
            },
            ("subscription_id", "subscription_status_modification"),
        ),
    ),
)

BY_KEY: dict[str, ActionDef] = {action.key: action for action in CATALOG}


def custom_action(spec: Mapping[str, Any]) -> ActionDef:
    """An action a tenant added to Membrane themselves: any key, name and type, running one Kartra command.

    `spec` is `{key, name?, description?, type?, cmd, params?: [names], lead?: bool}`; its input schema
    has a string property per parameter (and email/lead_id when `lead` is true).
    """
    key, cmd = spec.get("key"), spec.get("cmd")
    params = spec.get("params", [])
    if not (isinstance(key, str) and key and isinstance(cmd, str) and cmd):
        raise ValueError("a custom action needs a key and the Kartra cmd it runs")
    if not (isinstance(params, list) and all(isinstance(p, str) for p in params)):
        raise ValueError("params must be a list of parameter names")
    lead = bool(spec.get("lead", False))
    properties = {p: _s(p) for p in params} | (_LEAD_KEYS if lead else {})
    return ActionDef(
        key=key,
        name=str(spec.get("name", key)),
        description=str(spec.get("description", f"Custom action {key}.")),
        type=str(spec.get("type", "connector-operation")),
        build=(_lead_command if lead else _account_command)(cmd, *params),
        pick=_slot(cmd),
        input_schema=_obj(properties),
    )


BY_ID: dict[str, ActionDef] = {action.id: action for action in CATALOG}
