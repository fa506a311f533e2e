"""The refund ledger's rules, held by the in-process ledger and by the Redis one that replicas share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from kartra_mcp.errors import MembraneTimeout
from kartra_mcp.tools.refund_ledger import UNSENT_HOLD_SECONDS, MemoryRefundLedger, RefundLedger, settling

MakeLedger = Callable[..., RefundLedger]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.hosted)])
async def make_ledger(request: pytest.FixtureRequest) -> AsyncIterator[MakeLedger]:
    """Ledgers of one kind; Redis ones made by this factory share one server, as replicas do."""
    if request.param == "memory":
        yield MemoryRefundLedger
        return
    from kartra_mcp.state.redis_store import RedisRefundLedger, RedisState, redis_client

    client = redis_client(request.getfixturevalue("redis").url)
    state = RedisState(client, "test:")
    yield lambda clock=None: RedisRefundLedger(state, **({"clock": clock} if clock else {}))
    await client.aclose()


async def test_a_held_refund_counts_until_it_is_settled_so_a_second_cannot_pass_the_limit(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    first = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert first is not None
    assert await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0) is None
    assert await ledger.counted("c", "7", 0.0) == 30.0
    # other transactions and connections have limits of their own
    assert await ledger.hold("c", "8", 30.0, seen=0.0, limit=50.0) is not None
    assert await ledger.hold("other", "7", 30.0, seen=0.0, limit=50.0) is not None


async def test_a_sent_refund_keeps_counting_while_kartra_does_not_show_it_and_is_not_counted_twice_when_it_does(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger()
    hold = await ledger.hold("c", "7", 30.0, seen=10.0, limit=50.0)
    assert hold is not None
    await ledger.settle(hold, sent=True)
    assert await ledger.counted("c", "7", 10.0) == 40.0  # Kartra does not show it yet
    assert await ledger.counted("c", "7", 40.0) == 40.0  # now it does
    assert await ledger.counted("c", "7", 55.0) == 55.0  # and someone refunded more by hand


async def test_a_refund_that_was_not_sent_is_released(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    hold = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert hold is not None
    await ledger.settle(hold, sent=False)
    assert await ledger.counted("c", "7", 0.0) == 0.0


async def test_a_hold_whose_refund_never_started_stops_counting_after_a_while(make_ledger: MakeLedger) -> None:
    now = [1_800_000_000.0]
    ledger = make_ledger(clock=lambda: now[0])
    assert await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0) is not None
    now[0] += UNSENT_HOLD_SECONDS + 1
    assert await ledger.counted("c", "7", 0.0) == 0.0


async def test_a_lost_answer_keeps_the_refund_counted(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    hold = await ledger.hold("c", "7", 30.0, seen=0.0, limit=50.0)
    assert hold is not None

    async def lost() -> None:
        raise MembraneTimeout("no answer")

    with pytest.raises(MembraneTimeout):
        await settling(ledger, hold, lost, lambda _: True)()
    assert await ledger.counted("c", "7", 0.0) == 30.0


async def test_refunds_held_at_once_never_pass_the_limit_together(make_ledger: MakeLedger) -> None:
    import anyio

    ledger = make_ledger()
    taken: list[bool] = []

    async def hold() -> None:
        taken.append(await ledger.hold("c", "7", 20.0, seen=5.0, limit=50.0) is not None)

    async with anyio.create_task_group() as tasks:
        for _ in range(6):
            tasks.start_soon(hold)
    assert sorted(taken) == [False] * 4 + [True] * 2
    assert await ledger.counted("c", "7", 5.0) == 45.0
