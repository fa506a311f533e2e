"""The seeded account: the same for the same seed, sized by the lead count, and every record findable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kartra_mcp.sandbox import Sandbox, SandboxConfig
from tests.sandbox.conftest import http_client, lead, output, snapshot, state

# What every account has, whatever its size: the catalog around the leads.
CATALOG_COUNTS = {
    "tags": 12,
    "lists": 6,
    "sequences": 5,
    "custom_fields": 5,
    "pages": 8,
    "memberships": 2,
    "products": 5,
}


async def _state(sandbox: Sandbox) -> dict[str, Any]:
    async with http_client(sandbox) as client:
        return await state(client)


async def test_the_same_seed_gives_the_same_account_and_another_seed_another() -> None:
    first, same, other = (Sandbox(SandboxConfig(seed=seed, leads=150)) for seed in (21, 21, 22))
    assert snapshot(first) == snapshot(same)
    assert await _state(first) == await _state(same)
    assert snapshot(first) != snapshot(other)
    assert await _state(first) != await _state(other)
    for box in (first, same, other):
        box.close()


def test_the_default_seed_gives_the_default_account() -> None:
    assert snapshot(Sandbox()) == snapshot(Sandbox(SandboxConfig(seed=7, leads=120)))


@pytest.mark.parametrize("leads", [0, 1, 50, 400])
async def test_the_account_has_as_many_leads_as_asked_and_the_whole_catalog(leads: int) -> None:
    counts = (await _state(Sandbox(SandboxConfig(leads=leads))))["counts"]
    assert counts["leads"] == leads
    assert {kind: counts[kind] for kind in CATALOG_COUNTS} == CATALOG_COUNTS


async def test_purchases_grow_with_the_number_of_leads() -> None:
    sizes = [(await _state(Sandbox(SandboxConfig(leads=n))))["counts"] for n in (0, 50, 400, 1600)]
    transactions = [c["transactions"] for c in sizes]
    subscriptions = [c["subscriptions"] for c in sizes]
    assert transactions[0] == subscriptions[0] == 0
    assert transactions == sorted(set(transactions))
    assert subscriptions == sorted(set(subscriptions))


@pytest.fixture(scope="module")
def large() -> Iterator[Sandbox]:
    """A 20,000-lead account, seeded once for the tests below (they only read it)."""
    box = Sandbox(SandboxConfig(leads=20_000))
    yield box
    box.close()


def test_every_lead_of_a_large_account_is_found_by_id_and_by_email(large: Sandbox) -> None:
    # All 20,000 through Kartra's engine, the code behind the proxy and every action (over HTTP
    # below for a spread of them): correctness only, not speed.
    assert len(large.account.leads) == 20_000
    for lead_id, record in large.account.leads.items():
        by_id = large.kartra.handle({"get_lead": {"id": str(lead_id)}})
        by_email = large.kartra.handle({"get_lead": {"email": record.email.upper()}})
        if record.deleted:
            assert by_id["type"] == by_email["type"] == "245"
        else:
            assert by_id["lead_details"]["id"] == by_email["lead_details"]["id"] == str(lead_id)
            assert by_id["lead_details"]["email"] == record.email


def test_every_transaction_and_subscription_of_a_large_account_is_found_by_id(large: Sandbox) -> None:
    account = large.account
    assert len(account.transactions) > 20_000
    for tx_id, tx in account.transactions.items():
        details = large.kartra.handle({"actions": [{"cmd": "get_transaction_details", "transaction_id": str(tx_id)}]})
        found = details["actions"][0]["get_transaction_details"]["transaction_details"]
        assert (found["transaction_id"], found["lead_id"]) == (str(tx_id), str(tx.lead_id))
    for sub_id, sub in account.subscriptions.items():
        details = large.kartra.handle(
            {"actions": [{"cmd": "get_subscription_details", "subscription_id": str(sub_id)}]}
        )
        found = details["actions"][0]["get_subscription_details"]["subscription_details"]
        assert (found["subscription_id"], found["subscription_lead_id"]) == (str(sub_id), str(sub.lead_id))


def test_a_large_account_hangs_together(large: Sandbox) -> None:
    account = large.account
    for tx in account.transactions.values():
        assert tx.lead_id in account.leads and tx.product_id in account.products
        if tx.parent_id is not None:
            assert account.transactions[tx.parent_id].type in ("sale", "rebill")
        if tx.type in ("sale", "rebill"):
            assert account.refunded_amount(tx.id) <= tx.amount
    for sub in account.subscriptions.values():
        assert sub.lead_id in account.leads
        assert any(t.subscription_id == sub.id for t in account.lead_transactions(sub.lead_id))
    assert sum(len(ids) for ids in account.transactions_by_lead.values()) == len(account.transactions)


@pytest.mark.parametrize("lead_id", [1, 2, 999, 5_000, 9_991, 12_345, 19_999, 20_000])
async def test_leads_of_a_large_account_are_found_over_http_by_id_and_email(large: Sandbox, lead_id: int) -> None:
    record = large.account.leads[lead_id]
    async with http_client(large) as client:
        if record.deleted:
            assert (await output(client, "get-lead", {"lead_id": str(lead_id)}))["type"] == "245"
            return
        by_id = await lead(client, lead_id=str(lead_id))
        by_email = await lead(client, email=record.email)
        assert by_id == by_email
        assert by_id["email"] == record.email
        transactions = await output(client, "retrieve-transactions-from-lead", {"email": record.email})
        assert [t["transaction_id"] for t in transactions["transaction_list"]] == [
            str(t.id) for t in large.account.lead_transactions(lead_id)
        ]
