"""State several replicas share through Redis: pending confirmations, the hourly cap, refund holds.

Each operation that must be atomic across replicas is one Lua script, which Redis runs alone: an id
is taken by exactly one replica, a cap place is counted and taken in one step, and a refund hold
is checked against the other holds and taken in one step. Any Redis failure becomes
`StateUnavailable`, so the call that needed it is refused and nothing is sent.

Imported only when `KARTRA_MCP_REDIS_URL` is set; the `redis` package comes with the `hosted` extra.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from kartra_mcp.errors import StateUnavailable
from kartra_mcp.tools.confirm import PendingCall
from kartra_mcp.tools.critical_cap import WINDOW_SECONDS
from kartra_mcp.tools.refund_ledger import UNSENT_HOLD_SECONDS, RefundHold

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Long enough for Kartra's own records to show a refund this server sent.
REFUND_MEMORY_SECONDS = 7 * 24 * 3600
TIMEOUT_SECONDS = 2.0

# A connection's pending ids are also a sorted set by expiry: counting them and keeping one is one step.
_PUT = """
local now, limit, px = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
if redis.call('ZCARD', KEYS[2]) >= limit then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', px)
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
if redis.call('PTTL', KEYS[2]) < px then redis.call('PEXPIRE', KEYS[2], px) end
return 1
"""

_TAKE = """
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""

_RESERVE = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
local done = redis.call('ZCARD', KEYS[1])
if done >= limit then return done end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return -1
"""

# Amounts are whole cents, so Lua's numbers add them exactly. Holds are fields `h:<token>` whose
# value is `<cents>:<taken at>`; `floor` is what is known refunded, counting refunds sent here.
_HOLD = """
local key = KEYS[1]
local now, stale = tonumber(ARGV[1]), tonumber(ARGV[1]) - tonumber(ARGV[2])
local seen, amount, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local floor, held = 0, 0
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == 'floor' then
    floor = tonumber(value)
  else
    local sep = string.find(value, ':', 1, true)
    if tonumber(string.sub(value, sep + 1)) < stale then
      redis.call('HDEL', key, name)
    else
      held = held + tonumber(string.sub(value, 1, sep - 1))
    end
  end
end
local base = math.max(seen, floor)
if ARGV[7] == 'count' then return base + held end
if base + held + amount > limit then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', key, 'h:' .. token, amount .. ':' .. ARGV[1])
redis.call('PEXPIRE', key, ARGV[6])
return {token, base}
"""

_SETTLE = """
local key = KEYS[1]
redis.call('HDEL', key, 'h:' .. ARGV[1])
if ARGV[2] == '1' then
  local floor = tonumber(redis.call('HGET', key, 'floor') or '0')
  redis.call('HSET', key, 'floor', math.max(floor, tonumber(ARGV[3])) + tonumber(ARGV[4]))
  redis.call('PEXPIRE', key, ARGV[5])
end
return 1
"""


def _cents(amount: float) -> int:
    return round(amount * 100)


class RedisState:
    """One Redis client and the scripts the shared stores run; keys start with `namespace`."""

    def __init__(self, client: redis_asyncio.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.put = client.register_script(_PUT)
        self.take = client.register_script(_TAKE)
        self.reserve = client.register_script(_RESERVE)
        self.hold = client.register_script(_HOLD)
        self.settle = client.register_script(_SETTLE)

    def scoped(self, scope: str) -> RedisState:
        """The same client and scripts under keys of `scope` alone (a tenant's)."""
        view = copy.copy(self)
        view.namespace = f"{self.namespace}{scope}:"
        return view

    def key(self, *parts: str) -> str:
        return self.namespace + ":".join(parts)

    async def shared_key(self, name: str, what: str) -> bytes:
        """A random key under `name` that every replica uses: the first replica's wins.

        Read every time, not kept: a Redis that restarted empty gets a new key, and all replicas move to it together.
        """
        client, key = self.client, self.key(name)

        async def shared() -> bytes:
            candidate = secrets.token_hex(32)
            found = await client.set(key, candidate, nx=True, get=True)
            value = candidate if found is None else found.decode() if isinstance(found, bytes) else str(found)
            return bytes.fromhex(value)

        return await self.run(what, shared)

    async def run(self, what: str, work: Callable[[], Awaitable[_T]]) -> _T:
        """`work`, with a Redis failure turned into a refusal that says what happened and what to do."""
        try:
            return await work()
        except (RedisError, OSError) as exc:
            logger.error("the shared state (Redis) could not %s: %s", what, exc)
            raise StateUnavailable(
                f"The shared state (Redis) could not {what} ({type(exc).__name__}: {exc}), so nothing was sent. "
                "Reads still work; a person must bring Redis back (KARTRA_MCP_REDIS_URL), then try again."
            ) from None


class RedisPendingStore:
    """Pending confirmations in Redis: any replica redeems an id another issued, and exactly one spends it."""

    def __init__(self, state: RedisState, *, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    async def secret(self) -> bytes:
        return await self._state.shared_key("confirm-secret", "read the key that signs confirmation ids")

    def _ttl_ms(self, until: float) -> int:
        # A minute's slack: the book checks the expiry itself, against its own clock.
        return max(1, int((until - self._clock() + 60) * 1000))

    async def put(self, call: PendingCall, limit: int) -> bool:
        value = json.dumps(
            {
                "tool": call.tool,
                "arguments": call.arguments,
                "connection": call.connection,
                "expires_at": call.expires_at,
                "channel": call.channel,
            },
            default=str,
        )
        keys = [self._state.key("confirm", call.nonce), self._state.key("confirm-pending", call.connection)]
        args: list[Any] = [repr(self._clock()), limit, value, self._ttl_ms(call.expires_at), call.nonce]
        args.append(repr(call.expires_at))
        kept = await self._state.run("keep the confirmation", lambda: self._state.put(keys=keys, args=args))
        return bool(kept)

    async def get(self, nonce: str) -> PendingCall | None:
        key = self._state.key("confirm", nonce)
        raw = await self._state.run("read the confirmation", lambda: self._state.client.get(key))
        if raw is None:
            return None
        data = json.loads(raw)
        return PendingCall(
            nonce, data["tool"], data["arguments"], data["connection"], float(data["expires_at"]), data["channel"]
        )

    async def was_spent(self, nonce: str) -> bool:
        key = self._state.key("spent", nonce)
        found = await self._state.run("read the confirmation", lambda: self._state.client.exists(key))
        return bool(found)

    async def take(self, call: PendingCall, until: float) -> bool:
        nonce = call.nonce
        keys = [self._state.key("confirm", nonce), self._state.key("spent", nonce)]
        keys.append(self._state.key("confirm-pending", call.connection))
        args: list[Any] = [self._ttl_ms(until), nonce]
        taken = await self._state.run("spend the confirmation", lambda: self._state.take(keys=keys, args=args))
        return bool(taken)


class RedisCriticalCap:
    """The hourly cap as a sorted set per connection: counting and taking a place is one script."""

    def __init__(self, state: RedisState, *, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    async def used(self, connection: str) -> int:
        key, since = self._state.key("critical", connection), self._clock() - WINDOW_SECONDS
        found = await self._state.run(
            "count the hour's critical calls", lambda: self._state.client.zcount(key, since, "+inf")
        )
        return int(found)

    @asynccontextmanager
    async def reserve(self, connection: str, limit: int) -> AsyncIterator[int | None]:
        key, place = self._state.key("critical", connection), secrets.token_hex(8)
        args: list[Any] = [repr(self._clock()), repr(WINDOW_SECONDS), limit, place]
        done = int(
            await self._state.run("count the hour's critical calls", lambda: self._state.reserve(keys=[key], args=args))
        )
        if done >= 0:
            yield done
            return
        try:
            yield None
        except BaseException:
            # Nothing was sent: give the place back (if Redis is gone too, it stays taken: safe).
            try:
                await self._state.client.zrem(key, place)
            except (RedisError, OSError) as exc:
                logger.warning("could not give back a place under the hourly cap: %s", exc)
            raise


class RedisRefundLedger:
    """Refund holds and sent totals per connection and transaction, shared by every replica."""

    def __init__(self, state: RedisState, *, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock

    def _keys(self, connection: str, transaction: str) -> list[str]:
        return [self._state.key("refund", connection, transaction), self._state.key("refund-token")]

    def _args(self, seen: float, amount: float, limit: float, mode: str) -> list[Any]:
        now = repr(self._clock())
        return [
            now,
            repr(UNSENT_HOLD_SECONDS),
            _cents(seen),
            _cents(amount),
            _cents(limit),
            REFUND_MEMORY_SECONDS * 1000,
            mode,
        ]

    async def counted(self, connection: str, transaction: str, seen: float) -> float:
        keys, args = self._keys(connection, transaction), self._args(seen, 0, 0, "count")
        cents = await self._state.run("read the refund totals", lambda: self._state.hold(keys=keys, args=args))
        return int(cents) / 100

    async def hold(
        self, connection: str, transaction: str, amount: float, *, seen: float, limit: float
    ) -> RefundHold | None:
        keys, args = self._keys(connection, transaction), self._args(seen, amount, limit, "hold")
        taken = await self._state.run("hold the refund's amount", lambda: self._state.hold(keys=keys, args=args))
        if not taken:
            return None
        token, base = taken
        return RefundHold(connection, transaction, amount, int(base) / 100, int(token))

    async def settle(self, hold: RefundHold, *, sent: bool) -> None:
        keys = self._keys(hold.connection, hold.transaction)[:1]
        args = [hold.token, "1" if sent else "0", _cents(hold.base), _cents(hold.amount), REFUND_MEMORY_SECONDS * 1000]
        try:
            await self._state.run("settle the refund's hold", lambda: self._state.settle(keys=keys, args=args))
        except StateUnavailable:
            # The refund's outcome stands; its hold keeps counting until it goes stale, which errs on the safe side.
            logger.error("the hold on a refund of transaction %s stays until it goes stale", hold.transaction)


def redis_client(url: str) -> redis_asyncio.Redis:
    """A client that fails fast: a Redis that is down refuses calls in seconds, not minutes."""
    return redis_asyncio.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )
