"""A Membrane answer larger than the client reads, through the SDK's client, with the sandbox served on
a real socket: a write's outcome is unknown and it is sent once; a read is refused and not asked again."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from pydantic import SecretStr
from starlette.types import Message, Receive, Scope, Send

from kartra_mcp.config import Settings
from kartra_mcp.membrane.transport import MembraneTransport
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.http import listen
from kartra_mcp.server.runtime import open_runtime
from tests.conftest import FAST_RETRY
from tests.server.conftest import connect, text_of

MAX_BODY = 1 << 20  # above any answer the sandbox gives, far below what the padded ones are


class _Padded:
    """The sandbox's app, whose successful runs answer, while `on`, with JSON padded past `MAX_BODY`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.app = sandbox.app
        self.on = False
        # Instead of padding: compressed with gzip, as a proxy that compresses unasked would send it.
        self.gzip = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.on and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/act"):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start, *parts = held
        body = b"".join(m.get("body", b"") for m in parts)
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        if start["status"] == 200 and self.gzip:
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
        elif start["status"] == 200:
            body += b" " * MAX_BODY  # still JSON, only too large to read
        await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _served(sandbox: Sandbox) -> AsyncIterator[tuple[str, _Padded]]:
    """The sandbox on a loopback port, as a real Membrane is reached."""
    padded = _Padded(sandbox)
    with listen("127.0.0.1", 0) as sock:
        server = uvicorn.Server(uvicorn.Config(padded, log_level="warning", log_config=None, lifespan="off"))
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}", padded
            finally:
                server.should_exit = True


def _runs(sandbox: Sandbox, key: str) -> int:
    return sum(1 for r in sandbox.requests if r.get("runs") == f"/act/action/{BY_KEY[key].id}")


async def test_a_write_whose_answer_is_too_large_is_an_unknown_outcome_sent_once_and_a_read_is_refused(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    email = samples["lead"]["email"]
    async with _served(sandbox) as (url, padded):
        membrane = settings.model_copy(update={"membrane_api_url": url, "membrane_token": SecretStr(sandbox.token)})
        async with (
            open_runtime(membrane, transport=MembraneTransport(max_body=MAX_BODY), retry=FAST_RETRY) as runtime,
            connect(runtime, mode) as client,
        ):
            padded.on = True
            write = await client.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
            read = await client.call_tool("get-lead", {"email": email})
            padded.on = False
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
    async with _served(sandbox) as (url, padded):
        membrane = settings.model_copy(update={"membrane_api_url": url, "membrane_token": SecretStr(sandbox.token)})
        async with open_runtime(membrane, retry=FAST_RETRY) as runtime, connect(runtime, mode) as client:
            padded.on = padded.gzip = True
            write = await client.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
            read = await client.call_tool("get-lead", {"email": email})
            rows = runtime.audit.rows(tool="assign-tag")
    compressed = "Membrane's answer came compressed (gzip) though kartra-mcp asked for none"
    assert write.is_error and text_of(write).startswith(f"OUTCOME UNKNOWN: {compressed}"), text_of(write)
    assert [r.outcome for r in rows] == ["unknown"]
    assert _runs(sandbox, "assign-tag") == 1
    assert read.is_error and text_of(read).startswith(compressed) and "a proxy" in text_of(read), text_of(read)
    assert _runs(sandbox, "get-lead") == 1
