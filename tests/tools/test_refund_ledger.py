from __future__ import annotations

import pytest

from kartra_mcp.errors import MembraneTimeout
from kartra_mcp.tools.refund_ledger import UNSENT_HOLD_SECONDS, MemoryRefundLedger, settling


async def test_a_held_refund_counts_until_it_is_settled_so_a_second_cannot_pass_the_limit() -> None:
    ledger = MemoryRefundLedger()
    first = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert first is not None
    assert await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0) is None
    assert await ledger.counted("c", "7", 0.0) == 30.0
    # other transactions and connections have limits of their own
    assert await ledger.hold("c", "8", 30.0, seen=0.0, limit=50.0) is not None
    assert await ledger.hold("other", "7", 30.0, seen=0.0, limit=50.0) is not None


async def test_a_sent_refund_keeps_counting_while_kartra_does_not_show_it_and_is_not_counted_twice_when_it_does() -> (
    None
):
    ledger = MemoryRefundLedger()
    hold = await ledger.hold("c", "7", 30.0, seen=10.0, limit=50.0)
    assert hold is not None
    await ledger.settle(hold, sent=True)
    assert await ledger.counted("c", "7", 10.0) == 40.0  # Kartra does not show it yet
    assert await ledger.counted("c", "7", 40.0) == 40.0  # now it does
    assert await ledger.counted("c", "7", 55.0) == 55.0  # and someone refunded more by hand


async def test_a_refund_that_was_not_sent_is_released() -> None:
    ledger = MemoryRefundLedger()
    hold = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert hold is not None
    await ledger.settle(hold, sent=False)
    assert await ledger.counted("c", "7", 0.0) == 0.0


async def test_a_hold_whose_refund_never_started_stops_counting_after_a_while() -> None:
    now = [0.0]
    ledger = MemoryRefundLedger(clock=lambda: now[0])
    assert await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0) is not None
    now[0] += UNSENT_HOLD_SECONDS + 1
    assert await ledger.counted("c", "7", 0.0) == 0.0


async def test_a_lost_answer_keeps_the_refund_counted() -> None:
    ledger = MemoryRefundLedger()
    hold = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert hold is not None

    async def lost() -> None:
        raise MembraneTimeout("no answer")

    with pytest.raises(MembraneTimeout):
        await settling(ledger, hold, lost, lambda _: True)()
    assert await ledger.counted("c", "7", 0.0) == 30.0
