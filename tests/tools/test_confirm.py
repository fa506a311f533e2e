from __future__ import annotations

from collections.abc import Callable

import pytest

from kartra_mcp.errors import ConfirmationInvalid
from kartra_mcp.tools.confirm import ConfirmationBook
from tests.pending_bound import LIMIT, Clock, check_book_bound

SECRET = b"k" * 32


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _book(clock: _Clock | None = None) -> ConfirmationBook:
    return ConfirmationBook(SECRET, ttl=300, clock=clock or _Clock())


async def test_an_id_redeems_exactly_the_call_it_was_issued_for_once() -> None:
    book = _book()
    confirmation, _ = await book.issue("refund-transaction", {"transaction_id": "7", "refund_amount": 5}, "conn")
    call = await book.redeem(confirmation, "conn")
    assert (call.tool, dict(call.arguments)) == ("refund-transaction", {"transaction_id": "7", "refund_amount": 5})
    with pytest.raises(ConfirmationInvalid, match="already used"):
        await book.redeem(confirmation, "conn")


async def test_an_expired_id_runs_nothing() -> None:
    clock = _Clock()
    book = _book(clock)
    confirmation, expires_at = await book.issue("t", {}, "conn")
    clock.now = expires_at + 1
    with pytest.raises(ConfirmationInvalid, match="expired"):
        await book.redeem(confirmation, "conn")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda cid: cid[:-1] + ("0" if cid[-1] != "0" else "1"), id="altered-mac"),
        pytest.param(lambda cid: cid.split(".")[0], id="no-mac"),
        pytest.param(lambda cid: "f" * 24 + "." + "0" * 32, id="invented"),
        pytest.param(lambda cid: "", id="empty"),
    ],
)
async def test_a_forged_or_unknown_id_runs_nothing(tamper: Callable[[str], str]) -> None:
    book = _book()
    confirmation, _ = await book.issue("t", {"a": 1}, "conn")
    with pytest.raises(ConfirmationInvalid):
        await book.redeem(tamper(confirmation), "conn")
    assert (await book.redeem(confirmation, "conn")).tool == "t"  # the real one still works once


async def test_an_id_from_another_server_secret_is_refused() -> None:
    confirmation, _ = await _book().issue("t", {}, "conn")
    with pytest.raises(ConfirmationInvalid):
        await ConfirmationBook(b"x" * 32).redeem(confirmation, "conn")


async def test_an_id_is_bound_to_its_connection() -> None:
    book = _book()
    confirmation, _ = await book.issue("t", {}, "conn-a")
    with pytest.raises(ConfirmationInvalid):
        await book.redeem(confirmation, "conn-b")


async def test_an_echoed_id_must_match_the_retried_calls_tool_and_arguments() -> None:
    book = _book()
    confirmation, _ = await book.issue("refund-transaction", {"transaction_id": "7"}, "conn", channel="elicitation")
    with pytest.raises(ConfirmationInvalid, match="different call"):
        await book.redeem_for(confirmation, "refund-transaction", {"transaction_id": "8"}, "conn")
    await book.redeem_for(confirmation, "refund-transaction", {"transaction_id": "7"}, "conn")


async def test_argument_order_does_not_change_what_was_confirmed() -> None:
    book = _book()
    confirmation, _ = await book.issue("t", {"a": 1, "b": {"y": 2, "x": 1}}, "conn", channel="elicitation")
    await book.redeem_for(confirmation, "t", {"b": {"x": 1, "y": 2}, "a": 1}, "conn")


async def test_changing_the_arguments_after_issue_does_not_change_what_runs() -> None:
    book = _book()
    arguments = {"transaction_id": "7"}
    confirmation, _ = await book.issue("t", arguments, "conn")
    arguments["transaction_id"] = "8"
    assert dict((await book.redeem(confirmation, "conn")).arguments) == {"transaction_id": "7"}


async def test_an_id_works_only_through_the_channel_it_was_issued_for() -> None:
    book = _book()
    asked, _ = await book.issue("t", {}, "conn", channel="elicitation")
    with pytest.raises(ConfirmationInvalid):
        await book.redeem(asked, "conn")  # confirm-action cannot spend what the person was asked in their client
    token, _ = await book.issue("t", {}, "conn", channel="token")
    with pytest.raises(ConfirmationInvalid):
        await book.redeem_for(token, "t", {}, "conn")  # nor can a retried call spend a token id


async def test_a_discarded_id_runs_nothing() -> None:
    book = _book()
    confirmation, _ = await book.issue("t", {}, "conn")
    await book.discard(confirmation)
    with pytest.raises(ConfirmationInvalid, match="already used or declined"):
        await book.redeem(confirmation, "conn")


async def test_a_connection_with_the_most_ids_pending_gets_no_new_one_until_one_is_spent_or_expires() -> None:
    clock = Clock()
    await check_book_bound(ConfirmationBook(SECRET, ttl=300, clock=clock, limit=LIMIT), clock)
