"""A deterministic demo account: the same seed and size always give the same records."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

from kartra_mcp.sandbox.account import KartraAccount
from kartra_mcp.sandbox.model import (
    CustomField,
    CustomFieldOption,
    Lead,
    Level,
    MailingList,
    Membership,
    Page,
    PricePoint,
    Product,
    Record,
    Sequence,
    Subscription,
    Tag,
    Transaction,
)

DEFAULT_SEED = 7
DEFAULT_LEADS = 120

# The account's own calendar starts here, so seeded dates never depend on the day it runs.
_EPOCH = datetime(2026, 11, 1, 9, 0, 0)

_FIRST = (
    "Ava Liam Noah Emma Olivia Mia Lucas Amelia Ethan Harper Mason Ella Logan Aria James Chloe Elijah Zoe "
    "Benjamin Nora Henry Layla Jack Riley Leo Lily Owen Grace Samuel Hannah Daniel Ivy Mateo Luna Wyatt Sofia"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis Young"
).split()
_CITIES = (
    ("Austin", "TX", "US", "+1"),
    ("Denver", "CO", "US", "+1"),
    ("Toronto", "ON", "CA", "+1"),
    ("London", "", "GB", "+44"),
    ("Dublin", "", "IE", "+353"),
    ("Sydney", "NSW", "AU", "+61"),
    ("Berlin", "", "DE", "+49"),
    ("Portland", "OR", "US", "+1"),
)
_DOMAINS = ("example.com", "example.org", "example.net")
_SOURCES = ("single-optin", "double-optin", "checkout", "import", "api", "manual", "affiliate-signup")
_TAGS = (
    "Customer",
    "VIP",
    "Newsletter",
    "Webinar Attendee",
    "Trial",
    "Churn Risk",
    "Affiliate",
    "Beta Tester",
    "Black Friday 2026",
    "Refund Requested",
    "Coaching Client",
    "Lead Magnet: Checklist",
)
_LISTS = ("Newsletter", "Product Updates", "Webinar Registrants", "Customers", "Affiliates", "Podcast")
_SEQUENCES = (("Welcome Series", 5), ("Onboarding", 4), ("Win-back", 3), ("Webinar Follow-up", 6), ("Black Friday", 3))
_PAGES = (
    ("Home", "home", "Website"),
    ("Webinar Registration", "webinar", "Funnel"),
    ("Thank You", "thank-you", "Funnel"),
    ("Checkout - Growth Academy", "checkout-academy", "Checkout"),
    ("Sales Page - Masterclass", "masterclass", "Sales"),
    ("Members Login", "members", "Membership"),
    ("Blog", "blog", "Website"),
    ("Upsell - Coaching Circle", "upsell-coaching", "Funnel"),
)


def seed_account(account: KartraAccount, *, seed: int = DEFAULT_SEED, leads: int = DEFAULT_LEADS) -> None:
    """Fill an empty account with `leads` leads and the catalog, tags and purchases around them."""
    rng = random.Random(seed)
    account.add_all(_catalog())
    account.add_all(_people(account, rng, leads))
    for kind, value in (
        ("lead", leads + 1),
        ("tag", len(_TAGS) + 1),
        ("list", len(_LISTS) + 1),
        ("sequence", len(_SEQUENCES) + 1),
        ("custom_field", 6),
        ("custom_field_option", 700),
        ("page", len(_PAGES) + 1),
        ("transaction", max(account.transactions, default=700_000) + 1),
        ("subscription", max(account.subscriptions, default=14_800) + 1),
    ):
        account.next_ids[kind] = value
    account.store.set_meta("seed", f"{seed}:{leads}")
    account.commit()


def _catalog() -> Iterator[Record]:
    for index, name in enumerate(_TAGS, start=1):
        yield Tag(index, name)
    for index, name in enumerate(_LISTS, start=1):
        yield MailingList(index, name)
    for index, (name, steps) in enumerate(_SEQUENCES, start=1):
        yield Sequence(index, name, [str(step) for step in range(1, steps + 1)])
    yield CustomField(1, "job_title", "input_field")
    yield CustomField(2, "bio", "text_area")
    yield CustomField(
        3,
        "plan_interest",
        "drop_down",
        [CustomFieldOption(612, "Starter"), CustomFieldOption(613, "Pro"), CustomFieldOption(614, "Enterprise")],
    )
    yield CustomField(
        4,
        "preferred_contact",
        "radio_button",
        [CustomFieldOption(615, "Email"), CustomFieldOption(616, "Phone"), CustomFieldOption(617, "SMS")],
    )
    yield CustomField(
        5,
        "interests",
        "checkbox",
        [
            CustomFieldOption(620, "Marketing"),
            CustomFieldOption(621, "Sales"),
            CustomFieldOption(622, "Automation"),
            CustomFieldOption(623, "Memberships"),
        ],
    )
    for index, (name, slug, category) in enumerate(_PAGES, start=1):
        yield Page(index, name, f"https://demo.kartra.com/page/{slug}", category)
    yield Membership(1, "Growth Academy", [Level(1, "Basic"), Level(2, "Pro"), Level(3, "VIP")])
    yield Membership(2, "Coaching Circle", [Level(4, "Member"), Level(5, "Inner Circle")])
    yield Product(101, "Growth Academy", [PricePoint("Lifetime", 297.0, "USD")], membership_id=1, level_id=2)
    yield Product(102, "Coaching Circle", [PricePoint("Monthly", 49.0, "USD", "monthly")], membership_id=2, level_id=4)
    yield Product(
        103, "Growth Academy Annual", [PricePoint("Yearly", 497.0, "USD", "yearly")], membership_id=1, level_id=3
    )
    yield Product(104, "Templates Pack", [PricePoint("Standard", 27.0, "EUR")])
    yield Product(105, "Masterclass", [PricePoint("Standard", 97.0, "USD"), PricePoint("Early bird", 67.0, "USD")])


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _people(account: KartraAccount, rng: random.Random, count: int) -> Iterator[Record]:
    tx_id = 700_000
    sub_id = 14_800
    products = account.products
    for lead_id in range(1, count + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, state, country, dial = rng.choice(_CITIES)
        joined = _EPOCH - timedelta(days=rng.randrange(730), seconds=rng.randrange(86_400))
        lead = Lead(
            id=lead_id,
            email=f"{first}.{last}.{lead_id}@{rng.choice(_DOMAINS)}".lower(),
            date_joined=_stamp(joined),
            source=rng.choice(_SOURCES),
            profile={
                "first_name": first,
                "last_name": last,
                "phone_country_code": dial,
                "phone": f"555{rng.randrange(1_000_000, 9_999_999)}",
                "city": city,
                "state": state,
                "country": country,
                "ip": f"203.0.113.{rng.randrange(1, 255)}",
                "lead_preferred_time_zone": "America/New_York" if country in ("US", "CA") else "Europe/London",
            },
            score=rng.randrange(0, 200, 5),
            deleted=lead_id % 97 == 0,
        )
        if rng.random() < 0.3:
            lead.custom_fields["job_title"] = rng.choice(("Founder", "Coach", "Marketer", "Designer", "Consultant"))
            lead.custom_fields["plan_interest"] = [str(rng.choice((612, 613, 614)))]
        lead.tags = sorted(rng.sample(range(1, len(_TAGS) + 1), rng.randrange(0, 4)))
        lead.lists = {
            list_id: rng.random() > 0.15 for list_id in rng.sample(range(1, len(_LISTS) + 1), rng.randrange(0, 3))
        }
        if rng.random() < 0.25:
            sequence_id = rng.randrange(1, len(_SEQUENCES) + 1)
            lead.sequences[sequence_id] = {
                "step": str(rng.randrange(1, _SEQUENCES[sequence_id - 1][1] + 1)),
                "active": rng.random() > 0.2,
            }
        if rng.random() < 0.28 and not lead.deleted:
            # A customer: one to three purchases, some refunded, some recurring.
            for _ in range(rng.randrange(1, 4)):
                product = products[rng.choice((101, 102, 103, 104, 105))]
                price = rng.choice(product.price_points)
                bought = joined + timedelta(days=rng.randrange(1, 60), seconds=rng.randrange(86_400))
                if price.recurring_period is None:
                    tx_id += 1
                    sale = Transaction(
                        tx_id,
                        "sale",
                        lead_id,
                        product.id,
                        price.name,
                        price.amount,
                        price.currency,
                        _stamp(bought),
                        test=rng.random() < 0.03,
                        last4=f"{rng.randrange(10_000):04d}",
                    )
                    yield sale
                    roll = rng.random()
                    if roll < 0.08:
                        tx_id += 1
                        yield Transaction(
                            tx_id,
                            "refund",
                            lead_id,
                            product.id,
                            price.name,
                            price.amount,
                            price.currency,
                            _stamp(bought + timedelta(days=3)),
                            parent_id=sale.id,
                        )
                    elif roll < 0.14:
                        tx_id += 1
                        part = round(price.amount * rng.choice((0.25, 0.5)), 2)
                        yield Transaction(
                            tx_id,
                            "partial_refund",
                            lead_id,
                            product.id,
                            price.name,
                            part,
                            price.currency,
                            _stamp(bought + timedelta(days=5)),
                            parent_id=sale.id,
                        )
                    elif roll < 0.16:
                        tx_id += 1
                        yield Transaction(
                            tx_id,
                            "chargeback",
                            lead_id,
                            product.id,
                            price.name,
                            price.amount,
                            price.currency,
                            _stamp(bought + timedelta(days=20)),
                            parent_id=sale.id,
                        )
                else:
                    sub_id += 1
                    status = rng.choices(("Active", "Paused", "Cancelled"), (7, 1, 2))[0]
                    step = timedelta(days=30 if price.recurring_period == "monthly" else 365)
                    payments = rng.randrange(1, 6)
                    paypal = rng.random() < 0.15
                    yield Subscription(
                        sub_id,
                        f"I-{rng.randrange(16**10):010X}" if paypal else f"sub_{rng.randrange(16**12):012x}",
                        lead_id,
                        product.id,
                        price.name,
                        price.amount,
                        price.currency,
                        price.recurring_period,
                        status,
                        _stamp(bought),
                        _stamp(bought + step * payments) if status != "Cancelled" else "0000-00-00 00:00:00",
                        end_date=_stamp(bought + step * payments) if status == "Cancelled" else "0000-00-00 00:00:00",
                        current_installment=payments,
                        paypal=paypal,
                    )
                    for number in range(payments):
                        tx_id += 1
                        yield Transaction(
                            tx_id,
                            "sale" if number == 0 else "rebill",
                            lead_id,
                            product.id,
                            price.name,
                            price.amount,
                            price.currency,
                            _stamp(bought + step * number),
                            subscription_id=sub_id,
                            last4=f"{rng.randrange(10_000):04d}",
                        )
                    if status == "Cancelled":
                        tx_id += 1
                        yield Transaction(
                            tx_id,
                            "cancellation",
                            lead_id,
                            product.id,
                            price.name,
                            0.0,
                            price.currency,
                            _stamp(bought + step * payments),
                            subscription_id=sub_id,
                        )
                if product.membership_id is not None and product.level_id is not None:
                    lead.memberships[product.membership_id] = {
                        "level_id": product.level_id,
                        "active": True,
                        "granted_at": _stamp(bought),
                    }
                if 1 not in lead.tags:
                    lead.tags.append(1)
        yield lead
