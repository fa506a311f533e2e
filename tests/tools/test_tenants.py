"""Whose token is this, and each tenant's own pipeline: bounded, expiring, asked of Membrane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from kartra_mcp.errors import MembraneNotAuthenticated
from kartra_mcp.membrane import MembraneClient, RequestToken, person_token
from kartra_mcp.sandbox import Tenants
from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.policy import Policy
from kartra_mcp.tools.tenants import TenantDirectory, TenantRuntimes, TtlCache, token_digest
from tests.conftest import FAST_RETRY


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_forgotten_after_its_ttl_and_the_least_recently_used_past_the_size() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(ttl=10, size=2, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now b is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now = 10
    assert cache.get("a") is None and len(cache) == 1


@pytest.fixture
def team() -> Iterator[Tenants]:
    tenants = Tenants(keys=("alice", "bob"), leads=5)
    yield tenants
    tenants.close()


@pytest.fixture
async def client(team: Tenants) -> AsyncIterator[MembraneClient]:
    async with MembraneClient(
        base_url=team.base_url, auth=RequestToken(), transport=httpx2.ASGITransport(app=team), retry=FAST_RETRY
    ) as opened:
        yield opened


async def test_membrane_names_the_tenant_and_a_refused_token_is_no_one_s_and_not_remembered(
    team: Tenants, client: MembraneClient
) -> None:
    clock = Clock()
    directory = TenantDirectory(client, ttl=30, clock=clock)
    alice, bob = team.mint("alice"), team.mint("bob")
    first, second = await directory.identify(alice), await directory.identify(bob)
    assert first is not None and second is not None and first.key != second.key
    assert await directory.identify(alice) == first and directory.lookups == 2
    assert await directory.identify(team.mint("alice", lifetime=-1)) is None
    assert await directory.identify(team.mint("alice", lifetime=-1)) is None and directory.lookups == 4
    clock.now = 30
    await directory.identify(alice)
    assert directory.lookups == 5
    assert alice not in repr(directory._known._items) and token_digest(alice) in repr(directory._known._items)


async def test_without_a_person_s_token_bound_nothing_is_sent(team: Tenants, client: MembraneClient) -> None:
    with pytest.raises(MembraneNotAuthenticated):
        await client.list_connections()
    assert all(not s.requests for s in team.sandboxes.values())


async def test_a_token_is_remembered_no_longer_than_it_lives(team: Tenants, client: MembraneClient) -> None:
    clock = Clock()
    directory = TenantDirectory(client, ttl=30, clock=clock)
    short, long = team.mint("alice", lifetime=20), team.mint("alice", lifetime=600)
    for token in (short, long):
        assert await directory.identify(token) is not None
    clock.now = 21  # past the short token's expiry, within the cache's 30 seconds
    for token in (short, long):
        await directory.identify(token)
    assert directory.lookups == 3  # the short one was asked of Membrane again, the long one was not


async def test_each_tenant_has_its_own_executor_and_its_pending_state_outlives_a_reopening(
    team: Tenants, client: MembraneClient
) -> None:
    clock = Clock()
    log = AuditLog(None)
    runtimes = TenantRuntimes(client, policy=Policy(), audit=log, ttl=10, clock=clock)
    with person_token(team.mint("alice")):
        first = await runtimes.get("alice")
        assert await runtimes.get("alice") is first
        clock.now = 11
        again = await runtimes.get("alice")
    with person_token(team.mint("bob")):
        other = await runtimes.get("bob")
    assert again is not first and (again.book, again.refunds) == (first.book, first.refunds)
    assert other.book is not first.book and other.connection_id != first.connection_id
    assert (first.audit.tenant, other.audit.tenant) == ("alice", "bob")
    assert runtimes.opened == 3
    log.close()
