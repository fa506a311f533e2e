"""The bound on calls waiting for a person, checked alike on every store (in process and Redis)."""

from __future__ import annotations

import pytest

from kartra_mcp.errors import TooManyPending
from kartra_mcp.tools.approval import Approvals
from kartra_mcp.tools.call import ConfirmationRequest
from kartra_mcp.tools.confirm import ConfirmationBook
from kartra_mcp.tools.preview import Preview
from kartra_mcp.tools.spec import Risk

LIMIT = 3
START = 1_800_000_000.0


class Clock:
    """A clock the test moves: the book, the approvals and their stores all read it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


async def check_book_bound(book: ConfirmationBook, clock: Clock) -> None:
    """`book` (ttl 300, limit LIMIT) refuses past the bound per connection; a spent or expired id frees a place."""
    ids = [(await book.issue("refund-transaction", {"transaction_id": str(i)}, "c1"))[0] for i in range(LIMIT)]
    with pytest.raises(TooManyPending, match=r"already waiting for a person.s answer.*answer or decline"):
        await book.issue("refund-transaction", {"transaction_id": "x"}, "c1")
    await book.issue("refund-transaction", {"transaction_id": "x"}, "c2")  # another connection has its own places
    await book.redeem(ids[0], "c1")
    await book.issue("refund-transaction", {"transaction_id": "y"}, "c1")
    with pytest.raises(TooManyPending):
        await book.issue("refund-transaction", {"transaction_id": "z"}, "c1")
    await book.discard(ids[1])
    await book.issue("refund-transaction", {"transaction_id": "z"}, "c1")
    clock.now += 301  # every pending id has expired
    for i in range(LIMIT):
        await book.issue("refund-transaction", {"transaction_id": f"later-{i}"}, "c1")
    with pytest.raises(TooManyPending):
        await book.issue("refund-transaction", {"transaction_id": "later-x"}, "c1")


def _request(connection: str, n: int) -> ConfirmationRequest:
    preview = Preview(f"Refund transaction {n}", [], "Cannot be undone.")
    return ConfirmationRequest("refund-transaction", Risk.CRITICAL, preview, "id", 2e9, {"n": n}, connection)


async def check_approvals_bound(approvals: Approvals, clock: Clock) -> None:
    """`approvals` (ttl 300, limit LIMIT) open at most LIMIT pending per connection; an answer or expiry frees one."""
    opened = [(await approvals.open(_request("c1", i), "inbox", on_answer="run"))[0] for i in range(LIMIT)]
    with pytest.raises(TooManyPending, match="already waiting for a person's answer"):
        await approvals.open(_request("c1", 99), "inbox", on_answer="run")
    assert len(await approvals.store.pending()) == LIMIT  # the refused one was not kept
    await approvals.open(_request("c2", 0), "inbox", on_answer="run")
    await approvals.expire(opened[0], "inbox")
    await approvals.open(_request("c1", 100), "inbox", on_answer="run")
    with pytest.raises(TooManyPending):
        await approvals.open(_request("c1", 101), "inbox", on_answer="run")
    clock.now += 301
    for i in range(LIMIT):
        await approvals.open(_request("c1", 200 + i), "inbox", on_answer="run")
    with pytest.raises(TooManyPending):
        await approvals.open(_request("c1", 299), "inbox", on_answer="run")
