"""Progress notifications for tool calls that page through lists or wait to retry."""

from __future__ import annotations

from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult

from kartra_mcp import progress


def register(server: Server[Any]) -> None:
    """While a tool call runs, what it reports reaches the client (when it sent a progress token)."""

    async def report_to_client(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        steps = 0

        async def reporter(message: str) -> None:
            nonlocal steps
            steps += 1  # progress must only grow: each report is one more step, total unknown
            await ctx.session.report_progress(steps, None, message)

        async with progress.reporting_to(reporter):
            return await call_next(ctx)

    server.middleware.append(report_to_client)
