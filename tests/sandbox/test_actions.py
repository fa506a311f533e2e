"""Every action of the catalog, run over HTTP: what it does to the account, and how Kartra refuses it.

Inputs name records of the seeded account as `<sample.field>`, filled in from the sandbox's own
samples (plus a few records the samples do not name, and a lead prepared for the test), so the
tables read as data and do not depend on ids that a different seed would change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY, CATALOG
from tests.sandbox.conftest import error_body, fill, kartra, lead, output, run, snapshot, state

World = dict[str, Any]
Check = Callable[[Any, World], bool]


@pytest.fixture
async def world(client: httpx2.AsyncClient, sandbox: Sandbox, samples: dict[str, Any]) -> World:
    """The seeded samples, records they do not name, and a lead with something of everything to remove."""
    account = sandbox.account
    test_sale = next(t for t in account.transactions.values() if t.test)
    refund = next(t for t in account.transactions.values() if t.type == "refund")
    paypal = next(s for s in account.subscriptions.values() if s.paypal and s.status == "Active")
    prepared = await kartra(
        client,
        {
            "lead": {"email": "prepared@example.com", "first_name": "Pat"},
            "actions": [
                {"cmd": "create_lead"},
                {"cmd": "assign_tag", "tag_name": "VIP"},
                {"cmd": "subscribe_lead_to_list", "list_name": "Newsletter"},
                {"cmd": "subscribe_lead_to_sequence_at_step", "sequence_name": "Onboarding", "step": "2"},
                {"cmd": "give_points_to_lead", "points": "50"},
                {"cmd": "grant_membership_access", "membership_name": "Growth Academy", "level_name": "Pro"},
            ],
        },
    )
    assert [next(iter(slot.values()))["status"] for slot in prepared["actions"]] == ["Success"] * 6
    return {
        **samples,
        "counts": (await state(client))["counts"],
        "prepared": {"email": "prepared@example.com"},
        "shouting_lead": {"email": samples["lead"]["email"].upper()},
        "test_sale": {"transaction_id": str(test_sale.id)},
        "refund": {"transaction_id": str(refund.id)},
        "paypal_subscription": {"subscription_id": str(paypal.id)},
    }


# -- reads: the right answer, and nothing changes --------------------------------------------------


def _names(field: str, kind: str) -> Check:
    return lambda out, world: len(out[field]) == world["counts"][kind] and all(isinstance(n, str) for n in out[field])


READS = [
    pytest.param(
        "retrieve-account-pages",
        {},
        lambda out, w: len(out["account_pages"]) == w["counts"]["pages"] and out["account_pages"][0]["page_url"],
        id="retrieve-account-pages",
    ),
    pytest.param(
        "retrieve-account-custom-fields",
        {},
        lambda out, w: (
            len(out["custom_fields"]) == w["counts"]["custom_fields"]
            and {f["field_identifier"] for f in out["custom_fields"]} >= {"job_title", "plan_interest", "interests"}
        ),
        id="retrieve-account-custom-fields",
    ),
    pytest.param("retrieve-account-sequences", {}, _names("account_sequences", "sequences"), id="retrieve-sequences"),
    pytest.param("retrieve-account-tags", {}, _names("account_tags", "tags"), id="retrieve-account-tags"),
    pytest.param("retrieve-account-lists", {}, _names("account_lists", "lists"), id="retrieve-account-lists"),
    pytest.param(
        "retrieve-account-products",
        {},
        lambda out, w: (
            len(out["account_products"]) == w["counts"]["products"] and out["account_products"][0]["price_points"]
        ),
        id="retrieve-account-products",
    ),
    pytest.param(
        "retrieve-account-memberships",
        {},
        lambda out, w: (
            len(out["account_memberships"]) == w["counts"]["memberships"] and out["account_memberships"][0]["levels"]
        ),
        id="retrieve-account-memberships",
    ),
    pytest.param(
        "get-lead",
        {"email": "<lead.email>"},
        lambda out, w: out["lead_details"]["id"] == w["lead"]["id"],
        id="get-lead by email",
    ),
    pytest.param(
        "get-lead",
        {"lead_id": "<lead.id>"},
        lambda out, w: out["lead_details"]["email"] == w["lead"]["email"],
        id="get-lead by id",
    ),
    pytest.param(
        "get-lead",
        {"lead_id": "<lead.id>", "email": "<deleted_lead.email>"},
        lambda out, w: out["lead_details"]["id"] == w["lead"]["id"],
        id="get-lead id wins over email",
    ),
    pytest.param(
        "get-lead",
        {"email": "<prepared.email>"},
        lambda out, w: (
            {t["tag_name"] for t in out["lead_details"]["tags"]} == {"VIP"}
            and out["lead_details"]["memberships"][0]["level_name"] == "Pro"
            and out["lead_details"]["score"] == "50"
        ),
        id="get-lead shows tags memberships and points",
    ),
    pytest.param(
        "search-lead",
        {"email": "<lead.email>"},
        lambda out, w: out["status"] == "Success" and out["lead_details"]["id"] == w["lead"]["id"],
        id="search-lead",
    ),
    pytest.param(
        "get-transaction-details",
        {"transaction_id": "<refundable_transaction.transaction_id>"},
        lambda out, w: (
            out["transaction_details"]["transaction_id"] == w["refundable_transaction"]["transaction_id"]
            and float(out["transaction_details"]["transaction_full_amount"]) == w["refundable_transaction"]["amount"]
            and out["transaction_details"]["transaction_currency"] == w["refundable_transaction"]["currency"]
        ),
        id="get-transaction-details",
    ),
    pytest.param(
        "search-transaction",
        {"transaction_id": "<refundable_transaction.transaction_id>"},
        lambda out, w: out == {"status": "Success", "message": "Transaction exists"},
        id="search-transaction",
    ),
    pytest.param(
        "retrieve-transactions-from-lead",
        {"email": "<lead_with_transactions.email>"},
        lambda out, w: (
            w["refundable_transaction"]["transaction_id"] in {t["transaction_id"] for t in out["transaction_list"]}
        ),
        id="retrieve-transactions-from-lead",
    ),
    pytest.param(
        "get-subscription-details",
        {"subscription_id": "<active_subscription.subscription_id>"},
        lambda out, w: out["subscription_details"]["subscription_status"] == "Active",
        id="get-subscription-details",
    ),
    pytest.param(
        "search-subscription",
        {"subscription_id": "<paused_subscription.subscription_id>"},
        lambda out, w: out["status"] == "Success",
        id="search-subscription",
    ),
    pytest.param(
        "retrieve-subscriptions-from-lead",
        {"email": "<active_subscription.lead_email>"},
        lambda out, w: (
            w["active_subscription"]["subscription_id"] in {s["subscription_id"] for s in out["subscriptions_list"]}
        ),
        id="retrieve-subscriptions-from-lead",
    ),
]


@pytest.mark.parametrize(("key", "data", "check"), READS)
async def test_each_read_answers_from_the_account_and_changes_nothing(
    client: httpx2.AsyncClient, sandbox: Sandbox, world: World, key: str, data: dict[str, Any], check: Check
) -> None:
    before = snapshot(sandbox)
    out = await output(client, key, fill(data, world))
    assert out["status"] == "Success"
    assert check(out, world), out
    assert snapshot(sandbox) == before


# -- writes: Kartra says Success, and a read afterwards sees the change --------------------------------

PREPARED = {"email": "<prepared.email>"}
_PROBE_PREPARED = ("get-lead", PREPARED)


def _on_lead(check: Callable[[dict[str, Any]], bool]) -> Check:
    """A check on the lead_details of a get-lead answer (false when there is no such lead)."""
    return lambda out, world: out["status"] == "Success" and check(out["lead_details"])


def _tags(details: dict[str, Any]) -> set[str]:
    return {t["tag_name"] for t in details["tags"]}


def _row(details: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    return next((r for r in details[kind] if r[f"{kind[:-1]}_name"] == name), {})


def _field(details: dict[str, Any], identifier: str) -> Any:
    return next(f["field_value"] for f in details["custom_fields"] if f["field_identifier"] == identifier)


def _status(subscription: str) -> tuple[str, dict[str, Any]]:
    return ("get-subscription-details", {"subscription_id": f"<{subscription}.subscription_id>"})


def _has_status(wanted: str) -> Check:
    return lambda out, world: out["subscription_details"]["subscription_status"] == wanted


WRITES = [
    pytest.param(
        "create-lead",
        {
            "email": "nova@example.com",
            "first_name": "Nova",
            "custom_fields": [
                {"field_identifier": "job_title", "field_value": "CTO"},
                {"field_identifier": "interests", "field_value": ["620", "622"]},
                {"field_identifier": "no_such_field", "field_value": "ignored"},
            ],
        },
        ("get-lead", {"email": "nova@example.com"}),
        _on_lead(
            lambda d: (
                d["first_name"] == "Nova"
                and d["source"] == "api"
                and _field(d, "job_title") == "CTO"
                and [o["option_id"] for o in _field(d, "interests")] == ["620", "622"]
            )
        ),
        id="create-lead",
    ),
    pytest.param(
        "edit-lead",
        {
            **PREPARED,
            "first_name": "Patricia",
            "custom_fields": [{"field_identifier": "plan_interest", "field_value": "613"}],
        },
        _PROBE_PREPARED,
        _on_lead(lambda d: d["first_name"] == "Patricia" and _field(d, "plan_interest")[0]["option_value"] == "Pro"),
        id="edit-lead fields",
    ),
    pytest.param(
        "edit-lead",
        {**PREPARED, "new_email": "renamed@example.com"},
        ("get-lead", {"email": "renamed@example.com"}),
        _on_lead(lambda d: d["first_name"] == "Pat"),
        id="edit-lead new_email",
    ),
    pytest.param(
        "assign-tag",
        {**PREPARED, "tag_name": "beta tester"},
        _PROBE_PREPARED,
        _on_lead(lambda d: _tags(d) == {"VIP", "Beta Tester"}),
        id="assign-tag by name in any case",
    ),
    pytest.param(
        "unassign-tag",
        {**PREPARED, "tag_name": "VIP"},
        _PROBE_PREPARED,
        _on_lead(lambda d: _tags(d) == set()),
        id="unassign-tag",
    ),
    pytest.param(
        "subscribe-lead-to-list",
        {**PREPARED, "list_name": "Podcast"},
        _PROBE_PREPARED,
        _on_lead(lambda d: _row(d, "lists", "Podcast").get("active") == "1"),
        id="subscribe-lead-to-list",
    ),
    pytest.param(
        "unsubscribe-lead-from-list",
        {**PREPARED, "list_name": "Newsletter"},
        _PROBE_PREPARED,
        _on_lead(lambda d: _row(d, "lists", "Newsletter").get("active") == "0"),
        id="unsubscribe-lead-from-list keeps the row inactive",
    ),
    pytest.param(
        "subscribe-lead-to-sequence",
        {**PREPARED, "sequence_name": "Welcome Series", "step": "3"},
        _PROBE_PREPARED,
        _on_lead(
            lambda d: (
                (
                    _row(d, "sequences", "Welcome Series").get("step"),
                    _row(d, "sequences", "Welcome Series").get("status"),
                )
                == ("3", "active")
            )
        ),
        id="subscribe-lead-to-sequence",
    ),
    pytest.param(
        "unsubscribe-lead-from-sequence",
        {**PREPARED, "sequence_name": "Onboarding"},
        _PROBE_PREPARED,
        _on_lead(lambda d: _row(d, "sequences", "Onboarding").get("status") == "unsubscribed"),
        id="unsubscribe-lead-from-sequence",
    ),
    pytest.param(
        "give-points-to-lead",
        {**PREPARED, "points": 25, "expiration": 30},
        _PROBE_PREPARED,
        _on_lead(lambda d: d["score"] == "75"),
        id="give-points-to-lead",
    ),
    pytest.param(
        "remove-points-from-lead",
        {**PREPARED, "points": 20},
        _PROBE_PREPARED,
        _on_lead(lambda d: d["score"] == "30"),
        id="remove-points-from-lead",
    ),
    pytest.param(
        "grant-membership-access",
        {**PREPARED, "membership_name": "Coaching Circle", "level_name": "Inner Circle"},
        _PROBE_PREPARED,
        _on_lead(
            lambda d: any(
                m["membership_name"] == "Coaching Circle" and m["level_name"] == "Inner Circle" and m["active"] == "1"
                for m in d["memberships"]
            )
        ),
        id="grant-membership-access",
    ),
    pytest.param(
        "revoke-membership-access",
        {**PREPARED, "membership_name": "Growth Academy", "level_name": "Pro"},
        _PROBE_PREPARED,
        _on_lead(lambda d: [m["active"] for m in d["memberships"]] == ["0"]),
        id="revoke-membership-access",
    ),
    pytest.param(
        "create-custom-field",
        {
            "custom_field_identifier": "favourite_colour",
            "custom_field_type": "drop_down",
            "custom_field_options": ["Red", "Blue"],
        },
        ("retrieve-account-custom-fields", {}),
        lambda out, w: any(
            f["field_identifier"] == "favourite_colour"
            and f["field_type"] == "drop_down"
            and [o["option_value"] for o in f["field_value"]] == ["Red", "Blue"]
            for f in out["custom_fields"]
        ),
        id="create-custom-field",
    ),
    pytest.param(
        "refund-transaction",
        {"transaction_id": "<refundable_transaction.transaction_id>"},
        ("retrieve-transactions-from-lead", {"email": "<refundable_transaction.lead_email>"}),
        lambda out, w: any(
            t["transaction_type"] == "refund"
            and t["transaction_parent_id"] == w["refundable_transaction"]["transaction_id"]
            and float(t["transaction_amount"]) == w["refundable_transaction"]["amount"]
            for t in out["transaction_list"]
        ),
        id="refund-transaction in full",
    ),
    pytest.param(
        "cancel-subscription",
        {"transaction_id": "<active_subscription.transaction_id>"},
        _status("active_subscription"),
        _has_status("Cancelled"),
        id="cancel-subscription by transaction",
    ),
    pytest.param(
        "cancel-subscription",
        {"transaction_internal_subscription_id": "<paused_subscription.subscription_id>"},
        _status("paused_subscription"),
        _has_status("Cancelled"),
        id="cancel-subscription by subscription id",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<active_subscription.subscription_id>", "subscription_status_modification": "pause"},
        _status("active_subscription"),
        _has_status("Paused"),
        id="modify-subscription-status pause",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<paused_subscription.subscription_id>", "subscription_status_modification": "unpause"},
        _status("paused_subscription"),
        _has_status("Active"),
        id="modify-subscription-status unpause",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<paypal_subscription.subscription_id>", "subscription_status_modification": "cancel"},
        _status("paypal_subscription"),
        _has_status("Cancelled"),
        id="modify-subscription-status cancels a PayPal subscription",
    ),
]


@pytest.mark.parametrize(("key", "data", "probe", "check"), WRITES)
async def test_each_write_succeeds_and_a_read_afterwards_sees_the_change(
    client: httpx2.AsyncClient,
    world: World,
    key: str,
    data: dict[str, Any],
    probe: tuple[str, dict[str, Any]],
    check: Check,
) -> None:
    probe_key, probe_input = probe[0], fill(probe[1], world)
    assert not check(await output(client, probe_key, probe_input), world)
    out = await output(client, key, fill(data, world))
    assert out["status"] == "Success", out
    assert check(await output(client, probe_key, probe_input), world)


def test_every_action_in_the_catalog_has_a_success_case() -> None:
    covered = {p.values[0] for p in READS + WRITES}
    assert covered == set(BY_KEY)


# -- refusals: Kartra's type code, and nothing changes ------------------------------------------------

REFUSALS = [
    # leads
    pytest.param("get-lead", {"email": "nobody@example.com"}, "234", id="get-lead unknown email"),
    pytest.param("get-lead", {"lead_id": "999999"}, "234", id="get-lead unknown id"),
    pytest.param("get-lead", {"email": "<deleted_lead.email>"}, "245", id="get-lead deleted"),
    pytest.param("get-lead", {}, "206", id="get-lead without email or id"),
    pytest.param("search-lead", {"email": "nobody@example.com"}, "243", id="search-lead unknown"),
    pytest.param("search-lead", {"lead_id": "<deleted_lead.id>"}, "245", id="search-lead deleted"),
    pytest.param("retrieve-transactions-from-lead", {"email": "nobody@example.com"}, "243", id="transactions unknown"),
    pytest.param(
        "retrieve-subscriptions-from-lead", {"email": "<deleted_lead.email>"}, "245", id="subscriptions deleted"
    ),
    pytest.param("create-lead", {"email": "<lead.email>"}, "244", id="create-lead existing"),
    pytest.param("create-lead", {"email": "<shouting_lead.email>"}, "244", id="create-lead existing in any case"),
    pytest.param(
        "create-lead",
        {
            "email": "bad.choice@example.com",
            "custom_fields": [{"field_identifier": "plan_interest", "field_value": "1"}],
        },
        "271",
        id="create-lead unknown option",
    ),
    pytest.param("edit-lead", {"email": "nobody@example.com", "first_name": "X"}, "243", id="edit-lead unknown"),
    pytest.param("edit-lead", {**PREPARED, "new_email": "<lead.email>"}, "244", id="edit-lead new_email taken"),
    pytest.param(
        "edit-lead",
        {
            **PREPARED,
            "new_email": "moved@example.com",
            "first_name": "Changed",
            "custom_fields": [
                {"field_identifier": "job_title", "field_value": "Changed"},
                {"field_identifier": "preferred_contact", "field_value": ["615", "616"]},
            ],
        },
        "271",
        id="edit-lead two options for a radio button changes nothing",
    ),
    # tags, lists, sequences
    pytest.param("assign-tag", {**PREPARED, "tag_name": "No Such Tag"}, "212", id="assign-tag missing"),
    pytest.param("assign-tag", {**PREPARED, "tag_name": ""}, "211", id="assign-tag empty"),
    pytest.param("assign-tag", {"email": "nobody@example.com", "tag_name": "VIP"}, "243", id="assign-tag unknown lead"),
    pytest.param("unassign-tag", {**PREPARED, "tag_name": "No Such Tag"}, "214", id="unassign-tag missing"),
    pytest.param("unassign-tag", {**PREPARED, "tag_name": "  "}, "213", id="unassign-tag blank"),
    pytest.param("subscribe-lead-to-list", {**PREPARED, "list_name": "No List"}, "231", id="subscribe list missing"),
    pytest.param("subscribe-lead-to-list", {**PREPARED, "list_name": ""}, "207", id="subscribe list empty"),
    pytest.param(
        "unsubscribe-lead-from-list", {**PREPARED, "list_name": "No List"}, "209", id="unsubscribe list missing"
    ),
    pytest.param("unsubscribe-lead-from-list", {**PREPARED, "list_name": ""}, "208", id="unsubscribe list empty"),
    pytest.param(
        "subscribe-lead-to-sequence", {**PREPARED, "sequence_name": "Nope", "step": "1"}, "219", id="sequence missing"
    ),
    pytest.param(
        "subscribe-lead-to-sequence", {**PREPARED, "sequence_name": "", "step": "1"}, "226", id="sequence empty"
    ),
    pytest.param(
        "subscribe-lead-to-sequence", {**PREPARED, "sequence_name": "Onboarding", "step": ""}, "225", id="step empty"
    ),
    pytest.param(
        "subscribe-lead-to-sequence",
        {**PREPARED, "sequence_name": "Onboarding", "step": "step 2"},
        "229",
        id="step not alphanumeric",
    ),
    pytest.param(
        "subscribe-lead-to-sequence",
        {**PREPARED, "sequence_name": "Onboarding", "step": "9"},
        "230",
        id="step not in the sequence",
    ),
    pytest.param(
        "unsubscribe-lead-from-sequence", {**PREPARED, "sequence_name": "Nope"}, "220", id="unsub sequence missing"
    ),
    pytest.param("unsubscribe-lead-from-sequence", {**PREPARED, "sequence_name": ""}, "226", id="unsub sequence empty"),
    pytest.param(
        "give-points-to-lead", {"email": "<deleted_lead.email>", "points": 5}, "245", id="points to deleted lead"
    ),
    pytest.param("remove-points-from-lead", {"lead_id": "999999", "points": 5}, "243", id="points from unknown lead"),
    # custom fields (the sandbox's own codes inside Kartra's documented range)
    pytest.param(
        "create-custom-field", {"custom_field_identifier": "", "custom_field_type": "input_field"}, "263", id="cf empty"
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "JOB_TITLE", "custom_field_type": "input_field"},
        "264",
        id="cf exists in any case",
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "size", "custom_field_type": "drop_down"},
        "269",
        id="cf choice without options",
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "size", "custom_field_type": "radio_button", "custom_field_options": ["M"]},
        "270",
        id="cf one option",
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "size", "custom_field_type": "checkbox", "custom_field_options": ["M", " "]},
        "272",
        id="cf blank option",
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "shoe size", "custom_field_type": "input_field"},
        "273",
        id="cf identifier with a space",
    ),
    # memberships (the sandbox's own commands)
    pytest.param("grant-membership-access", {**PREPARED, "membership_name": "Nope"}, "291", id="grant missing"),
    pytest.param("grant-membership-access", {**PREPARED}, "291", id="grant no membership"),
    pytest.param(
        "grant-membership-access", {**PREPARED, "membership_name": "Coaching Circle"}, "292", id="grant no level"
    ),
    pytest.param(
        "grant-membership-access",
        {**PREPARED, "membership_name": "Coaching Circle", "level_name": "Pro"},
        "292",
        id="grant a level of another membership",
    ),
    pytest.param(
        "revoke-membership-access", {**PREPARED, "membership_name": "Coaching Circle"}, "293", id="revoke not granted"
    ),
    pytest.param(
        "revoke-membership-access",
        {**PREPARED, "membership_name": "Growth Academy", "level_name": "VIP"},
        "293",
        id="revoke another level than granted",
    ),
    pytest.param("revoke-membership-access", {**PREPARED, "membership_id": "77"}, "291", id="revoke missing"),
    # transactions and subscriptions
    pytest.param("get-transaction-details", {"transaction_id": "1"}, "247", id="details missing transaction"),
    pytest.param("search-transaction", {"transaction_id": "abc"}, "247", id="search transaction not an id"),
    pytest.param("get-subscription-details", {"subscription_id": "1"}, "248", id="details missing subscription"),
    pytest.param("search-subscription", {"subscription_id": "x"}, "248", id="search subscription not an id"),
    pytest.param("refund-transaction", {"transaction_id": "1"}, "247", id="refund missing"),
    pytest.param(
        "refund-transaction", {"transaction_id": "<refunded_transaction.transaction_id>"}, "251", id="refund refunded"
    ),
    pytest.param("refund-transaction", {"transaction_id": "<test_sale.transaction_id>"}, "253", id="refund test sale"),
    pytest.param("refund-transaction", {"transaction_id": "<refund.transaction_id>"}, "253", id="refund a refund"),
    pytest.param(
        "refund-transaction",
        {"transaction_id": "<refundable_transaction.transaction_id>", "refund_amount": 100000},
        "268",
        id="refund more than paid",
    ),
    pytest.param(
        "cancel-subscription",
        {"transaction_id": "<cancelled_subscription.transaction_id>"},
        "252",
        id="cancel already cancelled",
    ),
    pytest.param(
        "cancel-subscription",
        {"transaction_id": "<refundable_transaction.transaction_id>"},
        "249",
        id="cancel a sale with no subscription",
    ),
    pytest.param("cancel-subscription", {"transaction_id": "<test_sale.transaction_id>"}, "253", id="cancel test sale"),
    pytest.param("cancel-subscription", {"transaction_id": "1"}, "247", id="cancel missing transaction"),
    pytest.param("cancel-subscription", {}, "247", id="cancel with nothing named"),
    pytest.param(
        "cancel-subscription", {"transaction_internal_subscription_id": "1"}, "248", id="cancel missing subscription"
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<cancelled_subscription.subscription_id>", "subscription_status_modification": "unpause"},
        "275",
        id="modify cancelled",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<paypal_subscription.subscription_id>", "subscription_status_modification": "pause"},
        "284",
        id="modify pause PayPal",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<paused_subscription.subscription_id>", "subscription_status_modification": "pause"},
        "274",
        id="modify pause paused",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<active_subscription.subscription_id>", "subscription_status_modification": "unpause"},
        "274",
        id="modify unpause active",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "1", "subscription_status_modification": "cancel"},
        "248",
        id="modify missing",
    ),
]


@pytest.mark.parametrize(("key", "data", "code"), REFUSALS)
async def test_each_refusal_answers_kartras_type_code_and_changes_nothing(
    client: httpx2.AsyncClient, sandbox: Sandbox, world: World, key: str, data: dict[str, Any], code: str
) -> None:
    before = snapshot(sandbox)
    response = await run(client, key, fill(data, world))
    assert response.status_code == 200  # Kartra refuses with HTTP 200, and so Membrane passes it on
    out = response.json()["output"]
    assert (out["status"], out["type"]) == ("Error", code), out
    assert snapshot(sandbox) == before


def test_every_action_that_names_a_record_has_a_refusal_case() -> None:
    listings = {a.key for a in CATALOG if a.key.startswith("retrieve-account-")}
    assert {p.values[0] for p in REFUSALS} == set(BY_KEY) - listings


async def test_partial_refunds_go_up_to_what_is_left_then_refuse_more(
    client: httpx2.AsyncClient, samples: dict[str, Any]
) -> None:
    sale = samples["refundable_transaction"]
    paid = sale["amount"]
    first = await output(client, "refund-transaction", {"transaction_id": sale["transaction_id"], "refund_amount": 10})
    assert (first["status"], first["refund_amount"], first["transaction_refunded"]) == (
        "Success",
        "10.00",
        sale["transaction_id"],
    )
    too_much = await output(
        client, "refund-transaction", {"transaction_id": sale["transaction_id"], "refund_amount": paid - 10 + 0.01}
    )
    assert too_much["type"] == "268"
    rest = await output(client, "refund-transaction", {"transaction_id": sale["transaction_id"]})
    assert (rest["status"], float(rest["refund_amount"])) == ("Success", paid - 10)
    again = await output(client, "refund-transaction", {"transaction_id": sale["transaction_id"], "refund_amount": 1})
    assert again["type"] == "251"

    rows = (await output(client, "retrieve-transactions-from-lead", {"email": sale["lead_email"]}))["transaction_list"]
    refunds = [r for r in rows if r["transaction_parent_id"] == sale["transaction_id"]]
    assert [(r["transaction_type"], float(r["transaction_amount"])) for r in refunds] == [
        ("partial_refund", 10.0),
        ("partial_refund", paid - 10),
    ]


async def test_cancelling_twice_cancels_once(client: httpx2.AsyncClient, samples: dict[str, Any]) -> None:
    subscription = samples["active_subscription"]

    async def cancellations() -> int:
        found = await output(client, "retrieve-transactions-from-lead", {"email": subscription["lead_email"]})
        return sum(1 for row in found["transaction_list"] if row["transaction_type"] == "cancellation")

    before = await cancellations()
    first = await output(client, "cancel-subscription", {"transaction_id": subscription["transaction_id"]})
    assert first["transaction_internal_subscription_id"] == subscription["subscription_id"]
    again = await output(
        client, "cancel-subscription", {"transaction_internal_subscription_id": subscription["subscription_id"]}
    )
    assert again["type"] == "252"
    assert await cancellations() == before + 1


async def test_a_changed_email_leaves_the_old_one_unknown(client: httpx2.AsyncClient, samples: dict[str, Any]) -> None:
    old = samples["lead"]["email"]
    assert (await output(client, "edit-lead", {"email": old, "new_email": "fresh@example.com"}))["status"] == "Success"
    assert (await output(client, "get-lead", {"email": old}))["type"] == "234"
    assert (await lead(client, email="fresh@example.com"))["id"] == samples["lead"]["id"]
    retaken = await output(client, "create-lead", {"email": old})
    assert retaken["status"] == "Success"


# -- Membrane's own refusal: input that does not match the action's schema ------------------------------

INVALID = [
    pytest.param("create-lead", {}, [""], id="create-lead without email"),
    pytest.param("create-lead", {"email": 5}, ["email"], id="email not text"),
    pytest.param(
        "create-lead",
        {"email": "a@example.com", "custom_fields": [{"field_identifier": "job_title"}]},
        ["custom_fields/0"],
        id="custom field without a value",
    ),
    pytest.param("assign-tag", {"email": "<lead.email>"}, [""], id="assign-tag without tag_name"),
    pytest.param(
        "give-points-to-lead", {"email": "<lead.email>", "points": "ten"}, ["points"], id="points not a number"
    ),
    pytest.param("give-points-to-lead", {"email": "<lead.email>", "points": 0}, ["points"], id="no points"),
    pytest.param("refund-transaction", {}, [""], id="refund without a transaction"),
    pytest.param(
        "refund-transaction",
        {"transaction_id": "<refundable_transaction.transaction_id>", "refund_amount": 0},
        ["refund_amount"],
        id="refund of nothing",
    ),
    pytest.param(
        "modify-subscription-status",
        {"subscription_id": "<active_subscription.subscription_id>", "subscription_status_modification": "resume"},
        ["subscription_status_modification"],
        id="modification not in the enum",
    ),
    pytest.param(
        "create-custom-field",
        {"custom_field_identifier": "due", "custom_field_type": "date"},
        ["custom_field_type"],
        id="custom field type not in the enum",
    ),
    pytest.param(
        "get-lead", {"email": ["<lead.email>"], "lead_id": 1}, ["email", "lead_id"], id="every bad path is listed"
    ),
]


@pytest.mark.parametrize(("key", "data", "paths"), INVALID)
async def test_input_that_fails_the_schema_is_a_400_listing_each_path_and_nothing_reaches_kartra(
    client: httpx2.AsyncClient, sandbox: Sandbox, world: World, key: str, data: dict[str, Any], paths: list[str]
) -> None:
    before = snapshot(sandbox)
    response = await run(client, key, fill(data, world))
    assert response.status_code == 400
    body = error_body(response)
    assert body["type"] == "bad_request"
    assert sorted(e["path"] for e in body["data"]["errors"]) == paths
    log = (await client.get(f"/action-run-logs/{body['data']['actionRunId']}")).json()
    assert (log["status"], log["integrationActionId"]) == ("error", BY_KEY[key].id)
    assert snapshot(sandbox) == before


# -- the catalog as Membrane lists it ---------------------------------------------------------------------


async def test_the_catalog_carries_membranes_schema_quirks(client: httpx2.AsyncClient) -> None:
    actions = {a["key"]: a for a in (await client.get("/actions")).json()["items"]}
    assert len(actions) == len(CATALOG) == 31
    assert "inputSchema" not in actions["retrieve-account-pages"]
    create = actions["create-lead"]["inputSchema"]
    assert create["properties"]["custom_fields"]["items"] == {"$ref": "#/definitions/customFieldValue"}
    assert "customFieldValue" in create["definitions"]
    text = str(actions)
    assert all(extra in text for extra in ("referenceCollection", "isImplied", "isSensitive"))
    options = actions["create-custom-field"]["inputSchema"]["properties"]["custom_field_options"]
    assert options["type"] == "array" and "items" not in options
    assert all(re.fullmatch(r"[0-9a-f]{24}", a["id"]) for a in actions.values())
    assert all(actions[key]["outputSchema"] for key in ("get-lead", "get-transaction-details", "retrieve-account-tags"))
