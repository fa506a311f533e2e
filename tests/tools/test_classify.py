from __future__ import annotations

import pytest

from kartra_mcp.tools.classify import classify
from kartra_mcp.tools.spec import Risk

# Custom actions a tenant may add to Membrane; each refunds, cancels or revokes whatever its name says.
SNEAKY = [
    ("lookup-and-reverse-sale", "Lookup and reverse sale", "connector-operation"),
    ("get-reembolso", "Get reembolso", "connector-operation"),
    ("fetch-remboursement", "Fetch remboursement", "api-request-to-external-app"),
    ("check-and-end-subscription", "Check and end subscription", None),
    ("find-and-deactivate-member", "Find and deactivate member", "connector-operation"),
    ("get-r_e_f_u_n_d", "Get r_e_f_u_n_d", "list-data-records"),
    ("get-r\u0435fund", "Get sale", "connector-operation"),  # a Cyrillic e
    ("get-l\u0435ad", "Get lead", "list-data-records"),  # a Cyrillic e, with a read type
    ("void-transaction", "Void transaction", "find-data-record-by-id"),
    ("get-sale\u200b", "Get sale", "search-data-record"),  # a zero-width space
]


@pytest.mark.parametrize(("key", "name", "kind"), SNEAKY)
def test_an_action_nothing_vouches_for_is_critical_whatever_its_words(key: str, name: str, kind: str | None) -> None:
    classed = classify(key, name, kind)
    assert classed.risk is Risk.CRITICAL
    assert classed.vouched_by is None
    assert not classed.idempotent


@pytest.mark.parametrize(
    ("key", "name", "kind"),
    [
        ("get-affiliate", "Get Affiliate", "connector-operation"),
        ("list-coupons", "List Coupons", "create-data-record"),
        ("read-notes", "Read notes", "update-data-record"),
        ("get-lead-export", "Get export", "run-javascript"),
        ("find-order", "Find order", "match-data-record"),
        ("lookup-order", "", None),
    ],
)
def test_words_that_sound_like_a_read_never_lower_a_class(key: str, name: str, kind: str | None) -> None:
    assert classify(key, name, kind).risk is Risk.CRITICAL


@pytest.mark.parametrize("kind", ["list-data-records", "find-data-record-by-id", "search-data-record"])
def test_a_membrane_type_that_reads_by_construction_vouches_for_a_read(kind: str) -> None:
    classed = classify("list-coupons", "List Coupons", kind)
    assert (classed.risk, classed.idempotent, classed.vouched_by) == (Risk.READ, True, f"Membrane type {kind}")


@pytest.mark.parametrize(
    "key", ["list-and-remove-duplicates", "search-and-cancel", "list-then-refund", "find-and-update-coupon"]
)
def test_words_that_speak_of_change_raise_a_read_type_to_critical(key: str) -> None:
    assert classify(key, "", "list-data-records").risk is Risk.CRITICAL


@pytest.mark.parametrize(
    ("key", "risk"),
    [
        ("get-lead", Risk.READ),
        ("create-lead", Risk.WRITE),
        ("unassign-tag", Risk.DESTRUCTIVE),
        ("refund-transaction", Risk.CRITICAL),
    ],
)
def test_the_built_in_table_vouches_for_kartras_own_actions(key: str, risk: Risk) -> None:
    assert classify(key, "", "connector-operation") == classify(key)
    assert classify(key).risk is risk and classify(key).vouched_by == "built-in table"


def test_the_persons_policy_classes_their_own_actions() -> None:
    classed = classify("lookup-order", "Lookup order", "connector-operation", {"lookup-order": Risk.READ})
    assert (classed.risk, classed.vouched_by) == (Risk.READ, "policy")
    assert classify("get-sale", "", "list-data-records", {"get-sale": Risk.WRITE}).risk is Risk.WRITE
