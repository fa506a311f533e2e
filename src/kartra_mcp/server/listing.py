"""tools/list answered from its wire form, built once per catalog version, policy and kind of client.

Every new session lists the tools, and building the list (a Tool per spec, each described under the
policy) then having the SDK validate and dump it for the session's protocol version costs more than
everything else the server does for that session. The list only changes when what it is built from
does: the executor (in hosted mode, the tenant's), its catalog's generation (bumped whenever the tools
are replaced, which is also when list_changed goes out), its policy, its tool mode and whether it has
an approval inbox; and per request, the protocol version, whether the client renders MCP Apps views,
and the cursor. Those are the key; the first request with a new key is answered the ordinary way and
its wire form kept as JSON, so a kept page is exactly what the SDK would send, and each request
gets objects of its own (an in-process client is handed the result without serializing it, and must
not be able to change what the next session is sent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.types import methods
from mcp.types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from kartra_mcp.jsoncodec import Kept
from kartra_mcp.server.apps import client_supports_apps
from kartra_mcp.tools.executor import Executor
from kartra_mcp.tools.policy import Policy

METHOD = "tools/list"
# Pages kept per executor; the key space is small (versions x apps x pages), so this only bounds a
# client walking every valid cursor.
_MAX_PAGES = 64


@dataclass(frozen=True)
class _Built:
    """What a page was built from on the executor's side; the page is stale once any of it differs."""

    generation: int
    policy: Policy
    tool_mode: str
    approvals: bool

    def same(self, other: _Built) -> bool:
        return (
            self.generation == other.generation
            and self.policy is other.policy
            and self.tool_mode == other.tool_mode
            and self.approvals == other.approvals
        )


def _built(executor: Executor) -> _Built:
    return _Built(executor.catalog.generation, executor.policy, executor.tool_mode, executor.approvals is not None)


def _page_key(ctx: ServerRequestContext[Any, Any], executor: Executor) -> tuple[str, bool, str | None] | None:
    """(protocol version, renders apps, cursor) when this request may be answered from a kept page; else None.

    None sends the request the ordinary way, which rejects what must be rejected: a handshake
    connection not initialized yet, params invalid for the version, a cursor not in its one spelling
    (`int()` reads "007" and " 7" as 7, and each would be a page of its own).
    """
    version = ctx.protocol_version
    if version not in MODERN_PROTOCOL_VERSIONS and ctx.session.client_params is None:
        return None
    try:
        methods.validate_client_request(METHOD, version, ctx.params)
    except (ValidationError, KeyError):
        return None
    cursor = (ctx.params or {}).get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and cursor.isdecimal() and str(int(cursor)) == cursor):
        return None
    apps = executor.approvals is not None and client_supports_apps(ctx)
    return version, apps, cursor


class ListingCache:
    """Server middleware: tools/list from kept wire forms, per executor (weakly held, so a tenant's go with it)."""

    def __init__(
        self,
        executor_for: Callable[[ServerRequestContext[Any, Any]], AbstractAsyncContextManager[Executor]],
        *,
        seen: Callable[[ServerRequestContext[Any, Any]], None],
    ) -> None:
        self._executor_for = executor_for
        self._seen = seen
        self._pages: WeakKeyDictionary[Executor, dict[tuple[str, bool, str | None], tuple[_Built, Kept]]]
        self._pages = WeakKeyDictionary()
        self.served = 0  # listings answered from a kept page

    @property
    def kept(self) -> int:
        """How many pages are kept, over every executor still alive."""
        return sum(len(pages) for pages in self._pages.values())

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != METHOD:
            return await call_next(ctx)
        async with self._executor_for(ctx) as executor:
            key = _page_key(ctx, executor)
            if key is None:
                return await call_next(ctx)
            built = _built(executor)
            pages = self._pages.setdefault(executor, {})
            kept = pages.get(key)
            if kept is not None and kept[0].same(built):
                self._seen(ctx)
                self.served += 1
                page: dict[str, Any] = kept[1].read()
                return page
            answer = await call_next(ctx)
            # A catalog refreshed while the page was built may have gone into it: keep it only if not.
            if isinstance(answer, Mapping) and built.same(_built(executor)):
                if len(pages) >= _MAX_PAGES:
                    pages.clear()
                pages[key] = (built, Kept(answer))
            return answer
