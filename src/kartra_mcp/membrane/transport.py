"""A lean HTTP/1.1 transport for the Membrane client on asyncio, with httptools' C parser.

httpx2's own transport (httpcore2 over anyio, h11 in pure Python) spent about a third of the
server's CPU per tool call: request and response events built and parsed in Python, an anyio
cancel scope per read and write, headers and body sent as two writes, and the socket polled
before each reuse. This one sends a request in one write, parses the answer in C, learns of a
closed connection from the event loop instead of polling, and keeps a few idle connections per
origin. It answers httpx2's transport interface, so the client, its auth, and the in-process
sandbox transport the tests use are unchanged; proxies from the environment still go through
httpx2's own transports (it mounts them per URL pattern).

Its errors are httpx2's: `ConnectError`/`ConnectTimeout` only when nothing was sent (the client
may then send again), `WriteError`/`ReadError`/`RemoteProtocolError`/`ReadTimeout` once the
request may have reached the server. An answer larger than it reads (`max_head`, `max_body`) is
`AnswerTooLarge`, a `RemoteProtocolError`: it stops reading at once and closes that connection.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httptools
import httpx2

# Idle connections kept per origin: the server's concurrent calls reuse them instead of reconnecting.
MAX_IDLE = 20
# An idle connection older than this is not reused: servers close idle ones (Node after 5 s), and a
# request written as the server closes would be lost (as httpx2's own transport does, 5 s).
KEEPALIVE_EXPIRY = 5.0
# The most an answer's status line and headers may take, interim answers (103) included: 64 KiB, as
# common servers and clients allow (nginx's large_client_header_buffers, Node's 16 KiB, h11's 100 KB);
# Membrane's heads are well under 1 KiB.
MAX_HEAD = 64 * 1024
# The most an answer's body may take. Membrane documents 30 MB as its largest response (a page of
# 1000 items, a raw Kartra read such as a lead list); twice that leaves room for a self-hosted
# Membrane with a raised limit, and still bounds what a faulty one (or a proxy) can make us hold.
MAX_BODY = 64 * 1024 * 1024


class AnswerTooLarge(httpx2.RemoteProtocolError):
    """An answer whose head or body is larger than the transport reads: it was not read, its connection closed."""


def _answer_too_large(part: str, bound: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"Membrane's answer has {part} larger than {_size(bound)}, the most kartra-mcp reads")


class _Bounded(httpx2.AsyncByteStream):
    """Another transport's answer body, refused as soon as it passes `bound` bytes."""

    def __init__(self, stream: httpx2.AsyncByteStream, bound: int) -> None:
        self._stream = stream
        self._bound = bound

    async def __aiter__(self) -> AsyncIterator[bytes]:
        room = self._bound
        async for chunk in self._stream:
            room -= len(chunk)
            if room < 0:
                raise _answer_too_large("a body", self._bound)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def bounding(max_body: int = MAX_BODY) -> Callable[[httpx2.Response], Awaitable[None]]:
    """A response hook that bounds the body of an answer another transport brings (httpx2's own, behind a
    proxy): refused before it is read when it says it is larger, else as soon as it grows past `max_body`.

    On this module's transport it is not needed: that one bounds what it reads itself.
    """

    async def bound(response: httpx2.Response) -> None:
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body:
            raise _answer_too_large("a body", max_body)
        if isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _Bounded(response.stream, max_body)

    return bound


class AnswerEncoded(AnswerTooLarge):
    """An answer compressed though the client asked for none: its size once read cannot be bounded."""


async def refuse_encoded(response: httpx2.Response) -> None:
    """A response hook, run before the body is read: refuse a compressed answer.

    The bounds above count the bytes that arrive; a compressed body of a few of them can grow to
    gigabytes once httpx2 decompresses it. The client asks for `identity`, so no server or proxy
    that honours it compresses; one that does anyway is refused.
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise AnswerEncoded(
            f"Membrane's answer came compressed ({encoding[:40]}) though kartra-mcp asked for none, so how large "
            "it is once read cannot be bounded"
        )


class _Exchange(asyncio.Protocol):
    """One TCP (or TLS) connection: it parses the answers to the requests written on it, one at a time."""

    def __init__(self, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self.transport: asyncio.Transport | None = None
        self._max_head = max_head
        self._max_body = max_body
        # Counted down as an answer arrives: raw bytes while its head is incomplete (an endless line
        # is held inside the parser, unseen), then each header; each piece of the body.
        self._reading_head = False
        self._head_read = 0
        self._head_room = 0
        self._body_room = 0
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head = False
        self.status = 0
        self.keep_alive = False
        self.idle_since = 0.0
        self._until_close = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes nobody asked for: this connection can no longer be trusted
            return
        if self._reading_head:
            self._head_read += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx2.RemoteProtocolError("Membrane switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx2.RemoteProtocolError(f"Membrane's answer is not valid HTTP/1.1: {exc}"))
        if self._reading_head and self._head_read > self._max_head:  # still no end to the head in sight
            self._too_large("headers", self._max_head)

    def eof_received(self) -> bool | None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            if self.status and self._until_close:  # an answer without a length ends with the connection
                self._finish()
            else:
                self._fail(httpx2.RemoteProtocolError("Membrane closed the connection before answering in full"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._fail(httpx2.ReadError(f"The connection to Membrane broke: {exc or 'closed'}"))

    # -- httptools callbacks --------------------------------------------------------------

    def _stray(self) -> bool:
        """Whether the parser is reading past the answer (bytes sent after it in the same read).

        They answer nothing we asked: they must not change the answer being handed back, and the
        connection can no longer be trusted for the next request.
        """
        if self._answer is not None and not self._answer.done():
            return False
        self.keep_alive = False
        self.close()
        return True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stray():
            return
        self._head_room -= len(name) + len(value) + 4  # with ": " and CRLF, so many tiny headers count too
        if self._head_room < 0:
            self._too_large("headers", self._max_head)
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._stray():
            return
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self._reading_head = 100 <= self.status < 200  # an interim answer: another head follows
        framed = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                framed = True
                if not self._head and int(value) > self._max_body:  # refused before a byte of it is read
                    self._too_large("a body", self._max_body)
                    return
            elif lower == b"transfer-encoding":
                framed = True
        self._until_close = not framed and not self.keep_alive
        if self._head:  # the parser would wait for the body the headers describe
            self._finish()

    def on_chunk_header(self) -> None:
        # Trailers may follow (after the last chunk, whose size the parser does not tell), and a line of
        # theirs is held inside the parser unseen until it ends: raw bytes count again until a chunk's data.
        self._reading_head, self._head_read = True, 0

    def on_body(self, body: bytes) -> None:
        if self._stray():
            return
        self._reading_head = False
        self._body_room -= len(body)
        if self._body_room < 0:
            self._too_large("a body", self._max_body)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._stray():
            return
        if 100 <= self.status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._headers, self._body = [], []
            return
        self._finish()

    # -- the exchange ---------------------------------------------------------------------

    def _finish(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    def _too_large(self, part: str, bound: int) -> None:
        self._fail(_answer_too_large(part, bound))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, data: bytes, *, head: bool, timeout: float | None) -> httpx2.Response:
        """Write one request and wait for its whole answer (at most `timeout` seconds for it)."""
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        self._answer = answer = loop.create_future()
        self._headers, self._body, self._head, self.status = [], [], head, 0
        self._reading_head, self._head_read, self._head_room = True, 0, self._max_head
        self._body_room = self._max_body
        try:
            self.transport.write(data)
        except (OSError, RuntimeError) as exc:
            self.close()
            raise httpx2.WriteError(f"Could not send to Membrane: {exc}") from None
        timer = loop.call_later(timeout, self._time_out) if timeout is not None else None
        try:
            await answer
        except BaseException:
            self.close()  # cancelled or failed mid-answer: what is left on the wire belongs to no one
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._answer = None
        if self._head:
            self._parser = httptools.HttpResponseParser(self)  # the parser still expects the body it will not get
        return httpx2.Response(
            self.status,
            headers=self._headers,
            content=b"".join(self._body),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _time_out(self) -> None:
        self._fail(httpx2.ReadTimeout("Membrane did not answer in time"))


class MembraneTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with keep-alive; see the module's docstring."""

    def __init__(
        self,
        *,
        attempt_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE,
        max_head: int = MAX_HEAD,
        max_body: int = MAX_BODY,
    ) -> None:
        """`attempt_timeout` bounds each request as a whole, connecting included (else only each step is bounded,
        by httpx2's timeouts); a caller that needs such a bound need not set one of its own around each request.
        An answer whose head (status line and headers) exceeds `max_head` bytes or whose body exceeds
        `max_body` bytes is refused with `AnswerTooLarge` (see `MAX_HEAD`, `MAX_BODY`)."""
        self.attempt_timeout = attempt_timeout
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._max_head = max_head
        self._max_body = max_body
        self._idle: dict[tuple[bytes, bytes, int], deque[_Exchange]] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx2.UnsupportedProtocol(f"Membrane's URL must be http or https, not {scheme.decode()}")
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connect_timeout, answer_timeout = timeouts.get("connect"), timeouts.get("read")
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.attempt_timeout is not None:
            connect_timeout = _least(connect_timeout, self.attempt_timeout)
        body = await request.aread()
        _refuse_unsafe(request)
        head = b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)
        headers = request.headers.raw
        if "transfer-encoding" in request.headers:  # a streamed body, read whole above: it goes out by its length,
            # since written as it is under `transfer-encoding: chunked` the server would read it as chunks
            headers = [pair for pair in headers if pair[0].lower() not in (b"transfer-encoding", b"content-length")]
        lines = [head, *(b"%s: %s\r\n" % pair for pair in headers)]
        if body and not any(name.lower() == b"content-length" for name, _ in headers):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        data = b"".join(lines) + body
        exchange = self._reuse(origin) or await self._connect(origin, connect_timeout)
        if self.attempt_timeout is not None:
            left = started + self.attempt_timeout - loop.time()
            if left <= 0:
                # Written now, it would time out at once with its outcome unknown; unsent, it may be sent again.
                self._keep(origin, exchange)
                raise httpx2.ConnectTimeout("No time was left to send the request to Membrane")
            answer_timeout = _least(answer_timeout, left)
        response = await exchange.exchange(data, head=request.method == "HEAD", timeout=answer_timeout)
        if exchange.keep_alive:
            self._keep(origin, exchange)
        else:
            exchange.close()
        response.request = request
        return response

    def _keep(self, origin: tuple[bytes, bytes, int], exchange: _Exchange) -> None:
        """Keep an open connection for the next request to `origin`, while there is room."""
        idle = self._idle.setdefault(origin, deque())
        if not exchange.closed and len(idle) < self._max_idle:
            exchange.idle_since = asyncio.get_running_loop().time()
            idle.append(exchange)
        else:
            exchange.close()

    def _reuse(self, origin: tuple[bytes, bytes, int]) -> _Exchange | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        fresh = asyncio.get_running_loop().time() - KEEPALIVE_EXPIRY
        while idle and idle[0].idle_since < fresh:  # the oldest are at the left
            idle.popleft().close()
        while idle:
            exchange = idle.pop()  # the most recently used is the least likely to have been closed by the server
            if not exchange.closed:
                return exchange
        return None

    async def _connect(self, origin: tuple[bytes, bytes, int], timeout: float | None) -> _Exchange:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if scheme == b"https":
            if self._ssl is None:  # built once: loading the CA bundle takes tens of milliseconds
                self._ssl = httpx2.create_ssl_context()
            tls = {"ssl": self._ssl, "server_hostname": host.decode("ascii")}
        try:
            async with asyncio.timeout(timeout):
                _, exchange = await loop.create_connection(
                    lambda: _Exchange(self._max_head, self._max_body), host.decode("ascii"), port, **tls
                )
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"Connecting to {host.decode()}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(f"Could not connect to {host.decode()}:{port}: {exc}") from None
        return exchange

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()


# RFC 9110: a method and a header name are tokens; a field value has no CR, LF or NUL (h11 refused
# the same, before this transport replaced it).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE = re.compile(rb"[\r\n\0]")


def _refuse_unsafe(request: httpx2.Request) -> None:
    """Refuse, before anything is sent, a request whose method or headers would split the request line or headers."""
    if not _TOKEN.fullmatch(request.method.encode()):
        raise httpx2.LocalProtocolError(f"Not a valid HTTP method: {request.method!r}")
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(value):
            raise httpx2.LocalProtocolError(f"Header {name.decode('latin-1')!r} is not a valid HTTP header")


def _size(count: int) -> str:
    """A byte count as people read it: `64 KiB`, `32 MiB`, `100 bytes`."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _least(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def network_transport(attempt_timeout: float | None = None) -> MembraneTransport | None:
    """This transport, unless the environment names a proxy: then None, so httpx2 uses its own, which honours it.

    (httpx2 reads `HTTPS_PROXY` and the like, and `NO_PROXY`, only when the client is given no transport.)
    """
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None
    return MembraneTransport(attempt_timeout=attempt_timeout)
