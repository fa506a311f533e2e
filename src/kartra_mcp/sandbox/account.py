"""One Kartra account held in memory: records, the indexes that keep every lookup constant-time,
and the write-through to a store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from kartra_mcp.sandbox import model
from kartra_mcp.sandbox.model import (
    CustomField,
    Lead,
    MailingList,
    Membership,
    Page,
    Product,
    Record,
    Sequence,
    Subscription,
    Tag,
    Transaction,
)
from kartra_mcp.sandbox.store import Store

# Kartra reports times as naive Eastern Standard Time.
EST = timezone(timedelta(hours=-5))
Clock = Callable[[], datetime]

_R = TypeVar("_R", bound=Record)

_KIND: dict[type[Any], str] = {
    Lead: "lead",
    Tag: "tag",
    MailingList: "list",
    Sequence: "sequence",
    CustomField: "custom_field",
    Page: "page",
    Membership: "membership",
    Product: "product",
    Transaction: "transaction",
    Subscription: "subscription",
}


def est_now(clock: Clock) -> str:
    """The clock's time as Kartra writes it: `YYYY-MM-DD HH:MM:SS` in EST, no offset."""
    return clock().astimezone(EST).strftime("%Y-%m-%d %H:%M:%S")


def _key(name: str) -> str:
    return name.strip().casefold()


class KartraAccount:
    """The account's records with by-id, by-email and by-name indexes."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.leads: dict[int, Lead] = {}
        self.leads_by_email: dict[str, int] = {}
        self.tags: dict[int, Tag] = {}
        self.lists: dict[int, MailingList] = {}
        self.sequences: dict[int, Sequence] = {}
        self.custom_fields: dict[int, CustomField] = {}
        self.pages: dict[int, Page] = {}
        self.memberships: dict[int, Membership] = {}
        self.products: dict[int, Product] = {}
        self.transactions: dict[int, Transaction] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self._by_name: dict[str, dict[str, int]] = {
            "tag": {},
            "list": {},
            "sequence": {},
            "custom_field": {},
            "membership": {},
        }
        self.transactions_by_lead: dict[int, list[int]] = {}
        self.subscriptions_by_lead: dict[int, list[int]] = {}
        self.children_of: dict[int, list[int]] = {}
        self.next_ids: dict[str, int] = {}

    # -- lookups ---------------------------------------------------------------------------

    def lead_by_email(self, email: str) -> Lead | None:
        lead_id = self.leads_by_email.get(email.strip().casefold())
        return None if lead_id is None else self.leads[lead_id]

    def tag_named(self, name: str) -> Tag | None:
        found = self._by_name["tag"].get(_key(name))
        return None if found is None else self.tags[found]

    def list_named(self, name: str) -> MailingList | None:
        found = self._by_name["list"].get(_key(name))
        return None if found is None else self.lists[found]

    def sequence_named(self, name: str) -> Sequence | None:
        found = self._by_name["sequence"].get(_key(name))
        return None if found is None else self.sequences[found]

    def custom_field_named(self, identifier: str) -> CustomField | None:
        found = self._by_name["custom_field"].get(_key(identifier))
        return None if found is None else self.custom_fields[found]

    def membership_named(self, name: str) -> Membership | None:
        found = self._by_name["membership"].get(_key(name))
        return None if found is None else self.memberships[found]

    def lead_transactions(self, lead_id: int) -> list[Transaction]:
        return [self.transactions[t] for t in self.transactions_by_lead.get(lead_id, ())]

    def lead_subscriptions(self, lead_id: int) -> list[Subscription]:
        return [self.subscriptions[s] for s in self.subscriptions_by_lead.get(lead_id, ())]

    def refunded_amount(self, transaction_id: int) -> float:
        """How much of a sale or rebill has been refunded or charged back already."""
        return round(
            sum(
                self.transactions[c].amount
                for c in self.children_of.get(transaction_id, ())
                if self.transactions[c].type in ("refund", "partial_refund", "chargeback")
            ),
            2,
        )

    def now(self) -> str:
        return est_now(self.clock)

    # -- changes ---------------------------------------------------------------------------

    def new_id(self, kind: str, start: int = 1) -> int:
        value = self.next_ids.get(kind, start)
        self.next_ids[kind] = value + 1
        return value

    def add(self, record: _R) -> _R:
        """Index a new record and persist it."""
        self._index(record)
        self.save(record)
        return record

    def save(self, record: Record) -> None:
        """Persist a changed record (the in-memory copy is already current)."""
        if self.store.durable:
            self.store.put(_KIND[type(record)], str(record.id), model.to_json(record))

    def change_lead_email(self, lead: Lead, new_email: str) -> None:
        self.leads_by_email.pop(lead.email.casefold(), None)
        lead.email = new_email
        self.leads_by_email[new_email.casefold()] = lead.id
        self.save(lead)

    def commit(self) -> None:
        self.store.set_meta("next_ids", json.dumps(self.next_ids))
        self.store.commit()

    def _index(self, record: Record) -> None:
        match record:
            case Lead():
                self.leads[record.id] = record
                self.leads_by_email[record.email.casefold()] = record.id
            case Tag():
                self.tags[record.id] = record
                self._by_name["tag"][_key(record.name)] = record.id
            case MailingList():
                self.lists[record.id] = record
                self._by_name["list"][_key(record.name)] = record.id
            case Sequence():
                self.sequences[record.id] = record
                self._by_name["sequence"][_key(record.name)] = record.id
            case CustomField():
                self.custom_fields[record.id] = record
                self._by_name["custom_field"][_key(record.identifier)] = record.id
            case Page():
                self.pages[record.id] = record
            case Membership():
                self.memberships[record.id] = record
                self._by_name["membership"][_key(record.name)] = record.id
            case Product():
                self.products[record.id] = record
            case Transaction():
                self.transactions[record.id] = record
                self.transactions_by_lead.setdefault(record.lead_id, []).append(record.id)
                if record.parent_id is not None:
                    self.children_of.setdefault(record.parent_id, []).append(record.id)
            case Subscription():
                self.subscriptions[record.id] = record
                self.subscriptions_by_lead.setdefault(record.lead_id, []).append(record.id)

    # -- bulk load and save ----------------------------------------------------------------

    def add_all(self, records: Iterable[Record]) -> None:
        """Index many records and persist them in one batch per kind (used by seeding)."""
        batches: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for record in records:
            self._index(record)
            if self.store.durable:
                batches.setdefault(_KIND[type(record)], []).append((str(record.id), model.to_json(record)))
        for kind, items in batches.items():
            self.store.put_many(kind, items)

    @classmethod
    def load(cls, store: Store, clock: Clock | None = None) -> KartraAccount:
        """Rebuild an account from a store that holds one."""
        account = cls(store, clock)
        readers: list[tuple[str, Callable[[dict[str, Any]], Record]]] = [
            ("tag", lambda d: Tag(**d)),
            ("list", lambda d: MailingList(**d)),
            ("sequence", lambda d: Sequence(**d)),
            ("custom_field", model.custom_field_from_json),
            ("page", lambda d: Page(**d)),
            ("membership", model.membership_from_json),
            ("product", model.product_from_json),
            ("lead", model.lead_from_json),
            ("transaction", lambda d: Transaction(**d)),
            ("subscription", lambda d: Subscription(**d)),
        ]
        for kind, read in readers:
            for data in store.load(kind):
                account._index(read(data))
        account.next_ids = {k: int(v) for k, v in json.loads(store.get_meta("next_ids") or "{}").items()}
        return account
