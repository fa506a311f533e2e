"""Log messages to the client: what the server logs while serving its request, secrets redacted.

- 2025-11-25 and earlier: nothing is sent until the client picks a level with `logging/setLevel`
  (remembered per connection, and forgotten when it closes).
- 2026-07-28: a request opts in by carrying the `io.modelcontextprotocol/logLevel` key in its
  `_meta`; only that request's messages at that level and above are sent, on its own stream.

The messages are the server's own log records (as verbose as the server logs, at most), with
credentials and anything shaped like one replaced by `[redacted]`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.types import (
    LOG_LEVEL_META_KEY,
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from kartra_mcp.server.connections import anchor_of, on_close
from kartra_mcp.server.runtime import Runtime

LEVELS: tuple[LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_PYTHON_LEVEL: dict[LoggingLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
REDACTED = "[redacted]"
_SHAPES = re.compile(
    r"(?i)(\bbearer\s+)[^\s\"',]+"  # Authorization header values
    r"|((?:token|secret|password|api[_-]?key|authorization|access[_-]?key)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)"
    r"[^\s\"'&,;]+"
    r"|\beyJ[\w-]+\.[\w-]+\.[\w-]*"  # JSON Web Tokens
)


def _mcp_level(levelno: int) -> LoggingLevel:
    found: LoggingLevel = "debug"
    for level in LEVELS:
        if levelno >= _PYTHON_LEVEL[level]:
            found = level
    return found


class Redactor:
    """Replaces the known secrets, and text shaped like a credential, with `[redacted]`."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + REDACTED, text)


def redactor_for(runtime: Runtime) -> Redactor:
    """A redactor that knows this runtime's credentials."""
    settings = runtime.settings
    held = (settings.membrane_token, settings.membrane_workspace_secret, settings.http_token)
    sandbox = runtime.sandbox.token if runtime.sandbox is not None else None
    return Redactor([*(s.get_secret_value() for s in held if s is not None), sandbox])


# The current request's outlet and the lowest Python level it takes; None outside an opted-in request.
_outlet: ContextVar[tuple[MemoryObjectSendStream[logging.LogRecord], int] | None] = ContextVar(
    "kartra_mcp_log_outlet", default=None
)


class _ToRequest(logging.Handler):
    """Hands each record logged inside an opted-in request to that request's forwarder."""

    def emit(self, record: logging.LogRecord) -> None:
        outlet = _outlet.get()
        if outlet is None or record.levelno < outlet[1]:
            return
        # A flood or a finished request: the client misses a message, the server carries on.
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            outlet[0].send_nowait(record)


_HANDLER = _ToRequest()


def install(logger: logging.Logger) -> None:
    """Forward `logger`'s records (once per process, however many servers are built)."""
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)


class ChosenLevels:
    """The level each handshake connection chose with `logging/setLevel`, until that connection closes."""

    def __init__(self) -> None:
        # The anchor is kept with the level so its id stays this connection's.
        self._chosen: dict[int, tuple[object, LoggingLevel]] = {}

    def get(self, ctx: ServerRequestContext[Any, Any]) -> LoggingLevel | None:
        anchor = anchor_of(ctx)
        found = self._chosen.get(id(anchor)) if anchor is not None else None
        return found[1] if found else None

    def choose(self, ctx: ServerRequestContext[Any, Any], level: LoggingLevel) -> None:
        anchor = anchor_of(ctx)
        if anchor is None:
            return
        key = id(anchor)
        if key not in self._chosen:
            on_close(ctx, lambda: self._chosen.pop(key, None))
        self._chosen[key] = (anchor, level)

    def held(self) -> int:
        """How many open connections have a level (closed ones are forgotten)."""
        return len(self._chosen)


def register(server: Server[Any], redact: Redactor, logger: logging.Logger) -> ChosenLevels:
    """Serve `logging/setLevel` and send each opted-in request the records logged while it runs."""
    chosen = ChosenLevels()
    install(logger)

    def threshold(ctx: ServerRequestContext[Any, Any]) -> LoggingLevel | None:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            wanted = (ctx.meta or {}).get(LOG_LEVEL_META_KEY)
            return wanted if wanted in LEVELS else None
        return chosen.get(ctx)

    async def set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
        chosen.choose(ctx, params.level)
        return EmptyResult()

    async def forward(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        level = threshold(ctx) if ctx.method != "logging/setLevel" else None
        if level is None:
            return await call_next(ctx)
        send, receive = anyio.create_memory_object_stream[logging.LogRecord](256)

        async def deliver() -> None:
            async with receive:
                async for record in receive:
                    note = LoggingMessageNotificationParams(
                        level=_mcp_level(record.levelno), logger=record.name, data=redact(record.getMessage())
                    )
                    try:
                        await ctx.session.send_notification(
                            LoggingMessageNotification(params=note), related_request_id=ctx.request_id
                        )
                    except Exception:  # the client went away; the request's own answer reports that
                        return

        token = _outlet.set((send, _PYTHON_LEVEL[level]))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(deliver)
                try:
                    result = await call_next(ctx)
                finally:
                    send.close()
        finally:
            _outlet.reset(token)
        return result

    server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    server.middleware.append(forward)
    return chosen
