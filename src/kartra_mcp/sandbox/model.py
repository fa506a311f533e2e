"""The records of a Kartra account, as plain dataclasses that round-trip through JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Lead profile fields Kartra's create_lead/edit_lead accept besides `email` and `custom_fields`.
PROFILE_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_name",
    "last_name",
    "last_name2",
    "phone_country_code",
    "phone",
    "ip",
    "address",
    "zip",
    "city",
    "state",
    "country",
    "company",
    "lead_picture",
    "website",
    "facebook",
    "twitter",
    "linkedin",
    "lead_preferred_time_zone",
    "sales_tax_id",
    "business_type",
    "notes",
)

CustomFieldType = Literal["input_field", "text_area", "drop_down", "radio_button", "checkbox"]
CHOICE_TYPES: frozenset[str] = frozenset({"drop_down", "radio_button", "checkbox"})

TransactionType = Literal["sale", "rebill", "refund", "partial_refund", "chargeback", "cancellation", "failed"]
SubscriptionStatus = Literal["Active", "Paused", "Cancelled"]


@dataclass
class Lead:
    id: int
    email: str
    date_joined: str
    source: str = "api"
    profile: dict[str, str] = field(default_factory=dict)
    score: int = 0
    blacklisted: bool = False
    deleted: bool = False
    # field identifier -> text, or the selected option ids of a choice field
    custom_fields: dict[str, str | list[str]] = field(default_factory=dict)
    tags: list[int] = field(default_factory=list)
    # list id -> subscribed (unsubscribing keeps the row and clears the flag, as Kartra does)
    lists: dict[int, bool] = field(default_factory=dict)
    # sequence id -> {"step": box number, "active": bool}
    sequences: dict[int, dict[str, Any]] = field(default_factory=dict)
    # membership id -> {"level_id": int, "active": bool, "granted_at": str}
    memberships: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Tag:
    id: int
    name: str


@dataclass
class MailingList:
    id: int
    name: str


@dataclass
class Sequence:
    id: int
    name: str
    steps: list[str]


@dataclass
class CustomFieldOption:
    option_id: int
    option_value: str


@dataclass
class CustomField:
    id: int
    identifier: str
    type: str
    options: list[CustomFieldOption] = field(default_factory=list)


@dataclass
class Page:
    id: int
    name: str
    url: str
    category: str


@dataclass
class Level:
    id: int
    name: str


@dataclass
class Membership:
    id: int
    name: str
    levels: list[Level]


@dataclass
class PricePoint:
    name: str
    amount: float
    currency: str
    # None for a one-time price; else how often it bills
    recurring_period: str | None = None


@dataclass
class Product:
    id: int
    name: str
    price_points: list[PricePoint]
    # the membership (and level) a purchase grants, if any
    membership_id: int | None = None
    level_id: int | None = None


@dataclass
class Transaction:
    id: int
    type: str
    lead_id: int
    product_id: int
    price_point: str
    amount: float
    currency: str
    date: str
    parent_id: int | None = None
    subscription_id: int | None = None
    test: bool = False
    quantity: int = 1
    last4: str = ""


@dataclass
class Subscription:
    id: int
    external_id: str
    lead_id: int
    product_id: int
    price_point: str
    amount: float
    currency: str
    period: str
    status: str
    start_date: str
    next_payment_date: str
    end_date: str = "0000-00-00 00:00:00"
    current_installment: int = 1
    installments_left: str = "Until cancelled"
    paypal: bool = False


Record = Lead | Tag | MailingList | Sequence | CustomField | Page | Membership | Product | Transaction | Subscription


def to_json(record: Record) -> dict[str, Any]:
    """A JSON-ready dict of a record (int dict keys become strings, as JSON needs)."""
    data = asdict(record)
    if isinstance(record, Lead):
        for name in ("lists", "sequences", "memberships"):
            data[name] = {str(k): v for k, v in data[name].items()}
    return data


def lead_from_json(data: dict[str, Any]) -> Lead:
    lead = Lead(**data)
    lead.lists = {int(k): v for k, v in data["lists"].items()}
    lead.sequences = {int(k): v for k, v in data["sequences"].items()}
    lead.memberships = {int(k): v for k, v in data["memberships"].items()}
    return lead


def custom_field_from_json(data: dict[str, Any]) -> CustomField:
    return CustomField(**{**data, "options": [CustomFieldOption(**o) for o in data["options"]]})


def membership_from_json(data: dict[str, Any]) -> Membership:
    return Membership(**{**data, "levels": [Level(**lv) for lv in data["levels"]]})


def product_from_json(data: dict[str, Any]) -> Product:
    return Product(**{**data, "price_points": [PricePoint(**p) for p in data["price_points"]]})
