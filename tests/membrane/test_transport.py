"""The Membrane client's own HTTP/1.1 transport, against real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest

from kartra_mcp.errors import (
    MembraneAnswerEncoded,
    MembraneAnswerTooLarge,
    MembraneError,
    MembraneTimeout,
    MembraneTransportError,
)
from kartra_mcp.membrane import BearerToken, MembraneClient
from kartra_mcp.membrane.transport import AnswerTooLarge, MembraneTransport, network_transport
from tests.conftest import FAST_RETRY

JSON_OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'

# What the server does with one whole request: bytes to answer with, and whether to close afterwards.
Script = Callable[[int, bytes], tuple[bytes, bool]]


@dataclass
class Loopback:
    """A scripted HTTP server on a loopback port: it records each request whole, per connection."""

    script: Script
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    # Connections the client closed while the server kept them open (as after an unfinished answer).
    left: int = 0


def _whole(buffer: bytes) -> int:
    """The length of the first whole request in `buffer` (0 if none yet)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0
    length = next(
        (
            int(line.split(b":")[1])
            for line in buffer[:end].split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return end + 4 + length if len(buffer) >= end + 4 + length else 0


@asynccontextmanager
async def _loopback(script: Script) -> AsyncIterator[Loopback]:
    served = Loopback(script)
    open_ones: list[tuple[asyncio.StreamWriter, asyncio.Task[None]]] = []

    closing = False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        task = asyncio.current_task()
        assert task is not None
        open_ones.append((writer, task))
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                buffer += chunk
                while size := _whole(buffer):
                    request, buffer = buffer[:size], buffer[size:]
                    served.requests.append(request)
                    answer, close = served.script(len(served.requests), request)
                    writer.write(answer)
                    await writer.drain()
                    if close:
                        writer.close()
                        return
        except ConnectionError:
            pass
        finally:
            writer.close()
        served.left += not closing

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    served.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield served
    finally:
        server.close()
        closing = True
        for writer, _ in open_ones:  # each handler ends as its connection does, before the loop goes
            writer.close()
        await asyncio.gather(*(task for _, task in open_ones), return_exceptions=True)


def _always(answer: bytes, *, close: bool = False) -> Script:
    return lambda _, __: (answer, close)


async def test_one_connection_carries_calls_in_turn_each_request_sent_whole() -> None:
    async with (
        _loopback(_always(JSON_OK)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        for n in range(3):
            response = await http.post("/act", json={"n": n})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
    assert served.connections == 1
    assert [r.split(b"\r\n\r\n", 1)[1] for r in served.requests] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert all(
        r.startswith(b"POST /act HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:" in r.lower() for r in served.requests
    )


async def test_concurrent_calls_each_get_their_own_answer() -> None:
    def echo(_: int, request: bytes) -> tuple[bytes, bool]:
        body = request.split(b"\r\n\r\n", 1)[1]
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body), False

    async with (
        _loopback(echo) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        answers: dict[int, bytes] = {}

        async def call(n: int) -> None:
            answers[n] = (await http.post("/act", content=str(n).encode())).content

        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(call, n)
    assert answers == {n: str(n).encode() for n in range(8)}


async def test_a_connection_the_server_closed_is_not_used_again() -> None:
    closing = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with (
        _loopback(_always(closing, close=True)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        for _ in range(3):
            assert (await http.get("/connections")).content == b"ok"
            await anyio.sleep(0.05)  # the close reaches the client
    assert served.connections == 3


async def test_chunked_answers_and_answers_ended_by_closing_are_read_whole() -> None:
    chunked = b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    until_close = b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"b":2}'
    async with (
        _loopback(lambda n, _: (chunked, False) if n == 1 else (until_close, True)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        assert (await http.get("/a")).json() == {"a": 1}
        assert (await http.get("/b")).json() == {"b": 2}


async def test_an_answer_to_head_has_no_body_and_the_connection_goes_on() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n"
    async with (
        _loopback(lambda n, _: (head, False) if n == 1 else (JSON_OK, False)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        assert (await http.head("/")).content == b""
        assert (await http.get("/")).json() == {"ok": True}
    assert served.connections == 1


async def test_an_answer_cut_off_loses_a_write_as_unknown_and_sends_it_once() -> None:
    cut = b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"output"'
    async with (
        _loopback(_always(cut, close=True)) as served,
        MembraneClient(base_url=served.url, auth=BearerToken("t"), retry=FAST_RETRY, act=True) as client,
    ):
        with pytest.raises(MembraneTransportError) as raised:
            await client.run_action("assign-tag", connection_id="c", input={}, retry_safe=False)
    assert raised.value.may_have_executed
    assert len(served.requests) == 1


async def test_an_answer_that_never_comes_times_out_and_the_connection_is_dropped() -> None:
    async with (
        _loopback(lambda n, _: (b"", False) if n == 1 else (JSON_OK, False)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url, timeout=0.2) as http,
    ):
        with pytest.raises(httpx2.ReadTimeout):
            await http.get("/")
        assert (await http.get("/")).json() == {"ok": True}
    assert served.connections == 2


async def test_a_call_cancelled_mid_answer_does_not_leave_its_connection_for_the_next() -> None:
    async with (
        _loopback(lambda n, _: (b"", False) if n == 1 else (JSON_OK, False)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        with anyio.move_on_after(0.1):
            await http.get("/")
        assert (await http.get("/")).json() == {"ok": True}
    assert served.connections == 2


def test_a_proxy_in_the_environment_leaves_requests_to_httpx2s_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(network_transport(), MembraneTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert network_transport() is None


async def test_an_answer_trickling_in_past_the_clients_timeout_ends_the_attempt() -> None:
    """Each byte comes well within the per-read timeout; the attempt as a whole is what is bounded."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        try:
            for _ in range(100):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with MembraneClient(
            base_url=url, auth=BearerToken("t"), retry=FAST_RETRY, act=True, timeout=0.3
        ) as client:
            with pytest.raises(MembraneTimeout):
                await client.run_action("get-lead", connection_id="c", input={}, retry_safe=False)
    finally:
        server.close()


async def test_bytes_after_a_whole_answer_change_nothing_in_it_and_its_connection_is_not_reused() -> None:
    """A second answer in the same read (nobody asked for it) must not become the first's status or body."""
    stray = b"HTTP/1.1 500 Oops\r\ncontent-length: 3\r\n\r\nbad"
    async with (
        _loopback(lambda n, _: (JSON_OK + stray, False) if n == 1 else (JSON_OK, False)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        first = await http.post("/act", json={})
        assert (first.status_code, first.content) == (200, b'{"ok":true}')
        second = await http.post("/act", json={})
        assert (second.status_code, second.content) == (200, b'{"ok":true}')
    assert served.connections == 2


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {"X-Note": "v\r\nX-Injected: 1"}),
        ("GET", {"X-Note": "v\nX-Injected: 1"}),
        ("GET", {"X-Note": "v\0"}),
        ("GET", {"X Bad: 1\r\nX-Injected": "1"}),
        ("GET / HTTP/1.1\r\nX-Injected: 1\r\nX", {}),
    ],
)
async def test_a_method_or_header_that_would_split_the_request_is_refused_and_nothing_is_sent(
    method: str, headers: dict[str, str]
) -> None:
    async with (
        _loopback(_always(JSON_OK)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        with pytest.raises(httpx2.LocalProtocolError):
            await http.request(method, "/", headers=headers)
        assert (await http.get("/")).json() == {"ok": True}
    assert served.requests and all(b"X-Injected" not in r for r in served.requests)
    assert served.connections == 1


async def test_a_streamed_body_is_sent_framed_by_its_length_not_as_unchunked_bytes() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"n":'
        yield b"1}"

    async with (
        _loopback(_always(JSON_OK)) as served,
        httpx2.AsyncClient(transport=MembraneTransport(), base_url=served.url) as http,
    ):
        assert (await http.post("/act", content=parts())).json() == {"ok": True}
    (request,) = served.requests
    head, body = request.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower()
    assert b"\r\ncontent-length: 7" in head.lower()
    assert body == b'{"n":1}'


async def test_a_request_with_no_time_left_after_connecting_is_not_sent_and_may_be_sent_again() -> None:
    transport = MembraneTransport(attempt_timeout=5)
    async with (
        _loopback(_always(JSON_OK)) as served,
        httpx2.AsyncClient(transport=transport, base_url=served.url) as http,
    ):
        await http.post("/act", json={"n": 0})  # leaves an idle connection to reuse
        transport.attempt_timeout = 1e-9  # spent before the request could be written
        with pytest.raises(httpx2.ConnectTimeout):
            await http.post("/act", json={"n": 1})
        transport.attempt_timeout = 5
        again = await http.post("/act", json={"n": 2})
    assert again.status_code == 200
    assert [r.split(b"\r\n\r\n", 1)[1] for r in served.requests] == [b'{"n":0}', b'{"n":2}']
    assert served.connections == 1


# -- answers larger than the transport reads -----------------------------------------------------------------

MAX_HEAD, MAX_BODY = 1024, 4096


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize(
    ("start", "said"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 8 * MAX_HEAD, "headers larger than 1 KiB", id="endless-line"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * 300 + b"content-length: 2\r\n\r\nok",
            "headers larger than 1 KiB",
            id="many-headers",
        ),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n" * 100,
            "headers larger than 1 KiB",
            id="endless-interim-answers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (100 * MAX_BODY) + b"x" * 1000,
            "a body larger than 4 KiB",
            id="content-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + _chunk(b"x" * 1000) * 5,
            "a body larger than 4 KiB",
            id="chunked",
        ),
        pytest.param(
            # Past what one read takes (256 KiB), so most of it comes after the last chunk's size line was read.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            + _chunk(b"ok")
            + b"0\r\nx-trailer: "
            + b"t" * 1024 * 1024,
            "headers larger than 1 KiB",
            id="endless-trailer",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"x" * (MAX_BODY + 1),
            "a body larger than 4 KiB",
            id="until-close",
        ),
    ],
)
async def test_an_answer_past_a_bound_is_refused_unread_and_its_connection_closed_not_reused(
    start: bytes, said: str
) -> None:
    """The server sends the start of an answer and nothing more: only a client that stopped reading goes away."""
    transport = MembraneTransport(max_head=MAX_HEAD, max_body=MAX_BODY)
    async with (
        _loopback(lambda n, _: (start if n == 1 else JSON_OK, False)) as served,
        httpx2.AsyncClient(transport=transport, base_url=served.url, timeout=10) as http,
    ):
        with pytest.raises(AnswerTooLarge) as raised:
            await http.get("/")
        assert str(raised.value) == f"Membrane's answer has {said}, the most kartra-mcp reads"
        assert (await http.get("/")).json() == {"ok": True}
    assert served.connections == 2
    assert served.left == 1  # the first, closed by the client with its answer unfinished


async def test_an_answer_at_its_bounds_is_read_whole_on_a_connection_kept() -> None:
    filler = MAX_HEAD - len(b"content-length: 4096\r\n") - len(b"x-fill: \r\n") - len(b"HTTP/1.1 200 OK\r\n\r\n")
    at_bounds = b"HTTP/1.1 200 OK\r\nx-fill: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        b"f" * filler,
        MAX_BODY,
        b"b" * MAX_BODY,
    )
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + _chunk(b"c" * MAX_BODY) + b"0\r\n\r\n"
    transport = MembraneTransport(max_head=MAX_HEAD, max_body=MAX_BODY)
    async with (
        _loopback(lambda n, _: (at_bounds if n == 1 else chunked, False)) as served,
        httpx2.AsyncClient(transport=transport, base_url=served.url) as http,
    ):
        first = await http.get("/")
        assert len(first.headers["x-fill"]) == filler and first.content == b"b" * MAX_BODY
        assert (await http.get("/")).content == b"c" * MAX_BODY
    assert served.connections == 1


async def _a_write_then_a_read(
    url: str, transport: httpx2.AsyncBaseTransport, refused: type[MembraneError]
) -> tuple[MembraneError, MembraneError]:
    """A write and then a read through the Membrane client on `transport`, each refused with `refused`."""
    async with MembraneClient(
        base_url=url, auth=BearerToken("t"), transport=transport, retry=FAST_RETRY, act=True
    ) as client:
        with pytest.raises(refused) as write:
            await client.run_action("assign-tag", connection_id="c", input={}, retry_safe=False)
        with pytest.raises(refused) as read:
            await client.run_action("get-lead", connection_id="c", input={}, retry_safe=True)
    return write.value, read.value


async def test_an_answer_too_large_leaves_a_write_unknown_sent_once_and_a_read_not_asked_again() -> None:
    huge = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_BODY + 1)
    transport = MembraneTransport(max_head=MAX_HEAD, max_body=MAX_BODY)
    async with _loopback(_always(huge)) as served:
        write, read = await _a_write_then_a_read(served.url, transport, MembraneAnswerTooLarge)
    assert write.may_have_executed and not read.retryable
    assert str(read) == (
        "Membrane's answer has a body larger than 4 KiB, the most kartra-mcp reads; "
        "the answer to POST /act was not read"
    )
    assert len(served.requests) == 2
    assert served.connections == 2


@pytest.mark.parametrize("ours", [True, False], ids=["own-transport", "httpx2-transport"])
async def test_a_compressed_answer_is_refused_unread_whatever_the_transport(ours: bool) -> None:
    """Its few bytes pass every bound on what arrives; decompressed they would not. None is asked for."""
    bomb = gzip.compress(b"0" * (100 * MAX_BODY))
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(bomb), bomb)
    transport = MembraneTransport(max_head=MAX_HEAD, max_body=MAX_BODY) if ours else httpx2.AsyncHTTPTransport()
    async with _loopback(_always(answer)) as served:
        write, read = await _a_write_then_a_read(served.url, transport, MembraneAnswerEncoded)
    assert len(bomb) < MAX_BODY
    assert write.may_have_executed and not read.retryable
    assert str(read).startswith("Membrane's answer came compressed (gzip) though kartra-mcp asked for none")
    assert len(served.requests) == 2
    assert all(b"\r\naccept-encoding: identity\r\n" in request.lower() for request in served.requests)


_RUN = b'{"output":{"ok":true}}'
_RUN_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_RUN), _RUN)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_BODY + 1) + b"x" * 100, id="content-length"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + _chunk(b"x" * 1000) * 5 + b"0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"x" * (MAX_BODY + 1), id="until-close"),
    ],
)
async def test_on_httpx2s_own_transport_an_answer_past_the_bound_is_refused_too(answer: bytes) -> None:
    """As behind a proxy, where httpx2's own transport reads: the client bounds what it brings."""
    async with (
        _loopback(lambda n, _: (answer, True) if n < 3 else (_RUN_OK, False)) as served,
        MembraneClient(
            base_url=served.url,
            auth=BearerToken("t"),
            transport=httpx2.AsyncHTTPTransport(),
            retry=FAST_RETRY,
            act=True,
            max_body=MAX_BODY,
        ) as client,
    ):
        with pytest.raises(MembraneAnswerTooLarge) as write:
            await client.run_action("assign-tag", connection_id="c", input={}, retry_safe=False)
        with pytest.raises(MembraneAnswerTooLarge) as read:
            await client.run_action("get-lead", connection_id="c", input={}, retry_safe=True)
        after = await client.run_action("get-lead", connection_id="c", input={}, retry_safe=True)
    assert after.output == {"ok": True}
    assert write.value.may_have_executed and not read.value.retryable
    assert str(read.value).startswith("Membrane's answer has a body larger than 4 KiB, the most kartra-mcp reads")
    assert len(served.requests) == 3
