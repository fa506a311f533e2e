"""Pending approvals in Redis: any replica lists, shows and answers an approval another opened.

Each approval is a hash (the call, bound at opening, and its state); the pending ones are also in a
sorted set by expiry, which the inbox reads. Answering is one Lua script that moves a pending
approval to its answer and takes it off the set, so of two replicas answering at once exactly one
settles it and runs the call. A call that waits for its answer polls the state, briefly and bounded.

Imported only when `KARTRA_MCP_REDIS_URL` is set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio

from kartra_mcp.state.redis_store import RedisState
from kartra_mcp.tools.approval.store import Approval, State
from kartra_mcp.tools.call import CallResult, ChannelName
from kartra_mcp.tools.spec import Risk

# How often a waiting call looks for its answer, and how long an answered approval is kept for check-approval.
POLL_SECONDS = 0.25
KEEP_SECONDS = 3600.0
# The inbox shows the soonest to expire; more than this many waiting at once is a queue nobody reads.
INBOX_LIMIT = 200

# Each connection's pending approvals are also a sorted set by expiry: counting them and opening one is one step.
_PUT = """
local now, limit, keep_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)
if redis.call('ZCARD', KEYS[3]) >= limit then return 0 end
redis.call('HSET', KEYS[1], 'call', ARGV[3], 'state', ARGV[5])
redis.call('PEXPIRE', KEYS[1], keep_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[8]))
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
if redis.call('PTTL', KEYS[3]) < keep_ms then redis.call('PEXPIRE', KEYS[3], keep_ms) end
return 1
"""

_SETTLE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'via', ARGV[2], 'by', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[4])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisApprovalStore:
    """The `ApprovalStore` every replica sharing one Redis (and one tenant's keys) sees alike."""

    def __init__(self, state: RedisState, *, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock
        self._put = state.client.register_script(_PUT)
        self._settle = state.client.register_script(_SETTLE)

    def _key(self, approval_id: str) -> str:
        return self._state.key("approval", approval_id)

    async def secret(self) -> bytes:
        return await self._state.shared_key("approval-secret", "read the key that signs approval pages")

    async def put(self, approval: Approval, limit: int) -> bool:
        call = {
            "secret_digest": approval.secret_digest,
            "tool": approval.tool,
            "arguments": approval.arguments,
            "connection": approval.connection,
            "risk": approval.risk.value,
            "preview_text": approval.preview_text,
            "facts": approval.facts,
            "channel": approval.channel,
            "expires_at": approval.expires_at,
            "on_answer": approval.on_answer,
        }
        keys = [self._key(approval.id), self._state.key("approvals"), self._by_connection(approval.connection)]
        keep_ms = max(1, int((approval.expires_at - self._clock() + KEEP_SECONDS) * 1000))
        args: list[Any] = [repr(self._clock()), limit, json.dumps(call, default=str), keep_ms, approval.state]
        args += [approval.id, repr(approval.expires_at), repr(KEEP_SECONDS)]
        kept = await self._state.run("keep the pending approval", lambda: self._put(keys=keys, args=args))
        return bool(kept)

    def _by_connection(self, connection: str) -> str:
        return self._state.key("approvals-pending", connection)

    async def get(self, approval_id: str) -> Approval | None:
        key = self._key(approval_id)
        found = await self._state.run("read the approval", lambda: self._state.client.hgetall(key))
        return _approval(approval_id, found)

    async def pending(self) -> list[Approval]:
        index, now = self._state.key("approvals"), self._clock()

        async def read() -> list[Approval]:
            ids = [_text(i) for i in await self._state.client.zrangebyscore(index, now, "+inf", 0, INBOX_LIMIT)]
            async with self._state.client.pipeline(transaction=False) as pipe:
                for approval_id in ids:
                    pipe.hgetall(self._key(approval_id))
                rows = await pipe.execute()
            found = [_approval(i, row) for i, row in zip(ids, rows, strict=True)]
            return [a for a in found if a is not None and a.state == "pending"]

        return await self._state.run("list the pending approvals", read)

    async def settle(self, approval_id: str, state: State, via: ChannelName, by: str | None) -> Approval | None:
        # The connection names the set the answer leaves; an unknown approval has nothing to settle.
        held = await self.get(approval_id)
        if held is None:
            return None
        keys = [self._key(approval_id), self._state.key("approvals"), self._by_connection(held.connection)]
        args = [state, via, json.dumps(by), approval_id]
        done = await self._state.run("record the answer", lambda: self._settle(keys=keys, args=args))
        return await self.get(approval_id) if done else None

    async def record(self, approval: Approval, result: CallResult) -> None:
        key = self._key(approval.id)
        value = json.dumps({"text": result.text, "structured": result.structured, "is_error": result.is_error})
        await self._state.run("keep the approved call's outcome", lambda: self._state.client.hset(key, "result", value))

    async def wait(self, approval: Approval, timeout: float) -> Approval:
        key, current = self._key(approval.id), approval
        with anyio.move_on_after(timeout):
            while current.state == "pending":
                await anyio.sleep(POLL_SECONDS)
                state = await self._state.run("read the approval", lambda: self._state.client.hget(key, "state"))
                if state is not None and _text(state) != "pending":
                    current = await self.get(approval.id) or current
        return current


def _approval(approval_id: str, row: dict[Any, Any]) -> Approval | None:
    fields = {_text(k): _text(v) for k, v in row.items()}
    if "call" not in fields:
        return None
    call = json.loads(fields["call"])
    result = json.loads(fields["result"]) if "result" in fields else None
    return Approval(
        id=approval_id,
        secret_digest=call["secret_digest"],
        tool=call["tool"],
        arguments=call["arguments"],
        connection=call["connection"],
        risk=Risk(call["risk"]),
        preview_text=call["preview_text"],
        facts=call["facts"],
        channel=call["channel"],
        expires_at=float(call["expires_at"]),
        on_answer=call["on_answer"],
        state=fields["state"],  # type: ignore[arg-type]  # written by this module: a State
        answered_via=fields.get("via"),  # type: ignore[arg-type]  # written by this module: a ChannelName
        answered_by=json.loads(fields["by"]) if "by" in fields else None,
        result=CallResult(result["text"], result["structured"], bool(result["is_error"])) if result else None,
    )
