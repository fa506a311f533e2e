"""What the server keeps per 2025-11-25 (handshake) connection, and forgetting it when the connection closes.

A handshake connection's initialize parameters are one object for its whole life: the public handle
that tells one connection from another. Whatever is kept under it must go when the connection
closes, or a server up for days holds every session it ever had.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from mcp.server import ServerRequestContext


def anchor_of(ctx: ServerRequestContext[Any, Any]) -> object | None:
    """The object that stands for this request's handshake connection; None before initialize."""
    return ctx.session.client_params


def on_close(ctx: ServerRequestContext[Any, Any], forget: Callable[[], object]) -> bool:
    """Run `forget` when this request's connection closes; False when the session offers no way to know
    (then the caller's own cap, if any, bounds what it keeps).

    The SDK unwinds a connection's exit stack on close; the lowlevel context reaches it only through the session.
    """
    stack = getattr(getattr(ctx.session, "_connection", None), "exit_stack", None)
    if not isinstance(stack, AsyncExitStack):
        return False
    stack.callback(forget)
    return True
