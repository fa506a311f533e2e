"""Change notifications to clients of both eras: the tool list, and the resources they watch.

- 2026-07-28: events go on a `SubscriptionBus`; `subscriptions/listen` streams deliver the kinds
  (and resource URIs) each client asked for.
- 2025-11-25 and earlier: each connection's most recent session reaches it on its standalone
  channel; `resources/subscribe` records which URIs that connection watches.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ToolsListChanged
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from kartra_mcp.server.connections import anchor_of, on_close

_MAX_LEGACY_SESSIONS = 1000


@dataclass
class _Legacy:
    session: ServerSession
    # Held so the connection's identity (its initialize parameters) outlives the key made of it.
    anchor: object
    watching: set[str] = field(default_factory=set)


class ToolListNotifier:
    """Tells clients of both eras that the tool list, or a resource they watch, changed."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._legacy: OrderedDict[int, _Legacy] = OrderedDict()

    def _entry(self, ctx: ServerRequestContext[Any, Any]) -> _Legacy | None:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        anchor = anchor_of(ctx)
        if anchor is None:
            return None
        key = id(anchor)
        entry = self._legacy.get(key)
        if entry is None:
            entry = self._legacy[key] = _Legacy(ctx.session, anchor)
            # Forget the connection when it closes: a server up for days must not hold every session it
            # ever had (up to the cap, ~17 KB each) until a notification to it fails.
            on_close(ctx, lambda: self._legacy.pop(key, None))
        entry.session = ctx.session
        self._legacy.move_to_end(key)
        while len(self._legacy) > _MAX_LEGACY_SESSIONS:
            self._legacy.popitem(last=False)
        return entry

    def seen(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self._entry(ctx)

    def held(self) -> int:
        """How many handshake connections would hear of a change (closed ones are forgotten)."""
        return len(self._legacy)

    def watch(self, ctx: ServerRequestContext[Any, Any], uri: str, *, on: bool = True) -> None:
        """`resources/subscribe` (or unsubscribe) on a handshake connection."""
        entry = self._entry(ctx)
        if entry is not None:
            (entry.watching.add if on else entry.watching.discard)(uri)

    async def changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for key, entry in list(self._legacy.items()):
            try:
                await entry.session.send_tool_list_changed()
            except Exception:  # a closed connection: forget it
                self._legacy.pop(key, None)

    async def resource_updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri))
        for key, entry in list(self._legacy.items()):
            if uri not in entry.watching:
                continue
            try:
                await entry.session.send_resource_updated(uri)
            except Exception:  # a closed connection: forget it
                self._legacy.pop(key, None)
