"""A Membrane answer larger than the client reads, through the SDK's client, with the sandbox served on
a real socket: a write's outcome is unknown and it is sent once; a read is refused and not asked again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.membrane.transport import MembraneTransport
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.sandbox.faults import FaultRule
from kartra_mcp.server.runtime import open_runtime
from tests.conftest import FAST_RETRY
from tests.routes import run_rule
from tests.server.conftest import connect, text_of
from tests.server.test_era_routing import serving

MAX_BODY = 1 << 20  # above any answer the sandbox gives, far below what the padded ones are


@asynccontextmanager
async def _served(sandbox: Sandbox, settings: Settings) -> AsyncIterator[Settings]:
    """The sandbox on a loopback port, as a real Membrane is reached; yields settings that point at it."""
    async with serving(sandbox.app, lifespan="off") as url:
        base = url.removesuffix("/mcp")
        yield settings.model_copy(update={"membrane_api_url": base, "membrane_token": SecretStr(sandbox.token)})


def _spoiled(sandbox: Sandbox, **how: Any) -> None:
    """From now on, spoil `how` every answer to `assign-tag`, and the next one to `get-lead`."""
    sandbox.faults.rules = [
        FaultRule(route=run_rule("act", BY_KEY["assign-tag"].id), **how),
        FaultRule(route=run_rule("act", BY_KEY["get-lead"].id), times=1, **how),
    ]


def _runs(sandbox: Sandbox, key: str) -> int:
    return sum(1 for r in sandbox.requests if r.get("runs") == f"/act/action/{BY_KEY[key].id}")


async def test_a_write_whose_answer_is_too_large_is_an_unknown_outcome_sent_once_and_a_read_is_refused(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    email = samples["lead"]["email"]
    async with (
        _served(sandbox, settings) as membrane,
        open_runtime(membrane, transport=MembraneTransport(max_body=MAX_BODY), retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        _spoiled(sandbox, pad_bytes=MAX_BODY)  # still JSON, only too large to read
        write = await client.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
        read = await client.call_tool("get-lead", {"email": email})
        after = await client.call_tool("get-lead", {"email": email})
        rows = runtime.audit.rows(tool="assign-tag")
    too_large = "Membrane's answer has a body larger than 1 MiB, the most kartra-mcp reads"
    assert write.is_error and text_of(write).startswith(f"OUTCOME UNKNOWN: {too_large}"), text_of(write)
    assert "Do not call this again until you check with get-lead" in text_of(write)
    assert [r.outcome for r in rows] == ["unknown"]
    assert _runs(sandbox, "assign-tag") == 1
    assert read.is_error and text_of(read).startswith(too_large) and "ask for less" in text_of(read), text_of(read)
    assert _runs(sandbox, "get-lead") == 2  # the refused read, then the one after: it was not asked again
    assert not after.is_error and "VIP" in text_of(after)  # the write whose answer went unread did happen


async def test_an_answer_compressed_unasked_is_refused_like_one_too_large(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    """A body a few bytes long can grow to gigabytes once decompressed, past every bound on what arrives."""
    email = samples["lead"]["email"]
    async with (
        _served(sandbox, settings) as membrane,
        open_runtime(membrane, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        _spoiled(sandbox, compressed=True)
        write = await client.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
        read = await client.call_tool("get-lead", {"email": email})
        rows = runtime.audit.rows(tool="assign-tag")
    compressed = "Membrane's answer came compressed (gzip) though kartra-mcp asked for none"
    assert write.is_error and text_of(write).startswith(f"OUTCOME UNKNOWN: {compressed}"), text_of(write)
    assert [r.outcome for r in rows] == ["unknown"]
    assert _runs(sandbox, "assign-tag") == 1
    assert read.is_error and text_of(read).startswith(compressed) and "a proxy" in text_of(read), text_of(read)
    assert _runs(sandbox, "get-lead") == 1
