"""Every answer to a question the server asked ends the wait, even a malformed one.

The SDK drops an incoming message that fails validation - a response with `"result": null`, say -
so the request it answers (an elicitation, while a refund waits for the person) would wait forever.
This read stream turns such an answer into a JSON-RPC error for the same id: the waiting request
ends, the confirmation counts as not given, and the audit log records it.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import INTERNAL_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError


def _as_error(item: SessionMessage | Exception) -> SessionMessage | Exception:
    if not isinstance(item, ValidationError):
        return item
    raw = next((e["input"] for e in item.errors() if isinstance(e.get("input"), dict)), None)
    if raw is None or "method" in raw or not isinstance(raw.get("id"), int | str) or isinstance(raw.get("error"), dict):
        return item
    error = ErrorData(code=INTERNAL_ERROR, message="The client's answer was malformed (its result is not an object).")
    return SessionMessage(JSONRPCError(jsonrpc="2.0", id=raw["id"], error=error))


class AnswersEndWaits:
    """A read stream over another, passing everything through but malformed answers, which become errors."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        return _as_error(await self._inner.receive())

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnswersEndWaits:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnswersEndWaits:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
