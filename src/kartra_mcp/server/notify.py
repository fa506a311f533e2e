"""Change notifications to clients of both eras: the tool list, and the resources they watch.

- 2026-07-28: events go on a `SubscriptionBus`; `subscriptions/listen` streams deliver the kinds
  (and resource URIs) each client asked for.
- 2025-11-25 and earlier: each connection's most recent session reaches it on its standalone
  channel; `resources/subscribe` records which URIs that connection watches.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.server import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent, ToolsListChanged
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from kartra_mcp.server.connections import anchor_of, on_close

_MAX_LEGACY_SESSIONS = 1000


@dataclass
class _Legacy:
    session: ServerSession
    # Held so the connection's identity (its initialize parameters) outlives the key made of it.
    anchor: object
    watching: set[str] = field(default_factory=set)


class _Bus(InMemorySubscriptionBus):
    """The SDK's in-process bus, which with no `subscriptions/listen` stream open publishes to no one at once.

    Every tool call publishes what it may have changed, and the SDK's bus yields to the event loop after
    each event so open streams can drain; with none open, that was three idle trips through the loop a call.
    """

    def __init__(self) -> None:
        super().__init__()
        self._open = 0

    async def publish(self, event: ServerEvent) -> None:
        if self._open:
            await super().publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(listener)
        self._open += 1
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                self._open -= 1
                unsubscribe()

        return once


class ToolListNotifier:
    """Tells clients of both eras that the tool list, or a resource they watch, changed."""

    def __init__(self) -> None:
        self.bus = _Bus()
        self._legacy: OrderedDict[int, _Legacy] = OrderedDict()
        # How many held connections watch each URI: a call that changed an unwatched one walks no connections.
        self._watched: Counter[str] = Counter()

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
            on_close(ctx, lambda: self._forget(key))
        entry.session = ctx.session
        self._legacy.move_to_end(key)
        while len(self._legacy) > _MAX_LEGACY_SESSIONS:
            self._forget(next(iter(self._legacy)))
        return entry

    def _forget(self, key: int) -> None:
        entry = self._legacy.pop(key, None)
        for uri in entry.watching if entry is not None else ():
            self._unwatched(uri)

    def _unwatched(self, uri: str) -> None:
        self._watched[uri] -= 1
        if self._watched[uri] <= 0:  # gone, not kept at zero: clients name any URIs they like
            del self._watched[uri]

    def seen(self, ctx: ServerRequestContext[Any, Any]) -> None:
        self._entry(ctx)

    def held(self) -> int:
        """How many handshake connections would hear of a change (closed ones are forgotten)."""
        return len(self._legacy)

    def watch(self, ctx: ServerRequestContext[Any, Any], uri: str, *, on: bool = True) -> None:
        """`resources/subscribe` (or unsubscribe) on a handshake connection."""
        entry = self._entry(ctx)
        if entry is None or (uri in entry.watching) == on:
            return
        if on:
            entry.watching.add(uri)
            self._watched[uri] += 1
        else:
            entry.watching.discard(uri)
            self._unwatched(uri)

    async def changed(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for key, entry in list(self._legacy.items()):
            try:
                await entry.session.send_tool_list_changed()
            except Exception:  # a closed connection: forget it
                self._forget(key)

    async def resource_updated(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri))
        if uri not in self._watched:
            return
        for key, entry in list(self._legacy.items()):
            if uri not in entry.watching:
                continue
            try:
                await entry.session.send_resource_updated(uri)
            except Exception:  # a closed connection: forget it
                self._forget(key)
