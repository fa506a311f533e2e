"""Where state lives: in this process (the default), or shared by replicas in Redis and PostgreSQL.

Chosen at start from the settings. The drivers (`redis`, `psycopg`: the `hosted` extra) are imported
only when their setting is set, so one process on one machine needs neither.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kartra_mcp.config import Settings
from kartra_mcp.errors import StateUnavailable
from kartra_mcp.tools.audit import AuditLog, AuditTrail

# Only the types at import: `kartra-mcp audit` reads the log without loading the call pipeline.
if TYPE_CHECKING:
    from kartra_mcp.tools.approval.store import ApprovalStore
    from kartra_mcp.tools.confirm import PendingStore
    from kartra_mcp.tools.critical_cap import CriticalCap
    from kartra_mcp.tools.refund_ledger import RefundLedger
    from kartra_mcp.tools.tenants import TenantState

logger = logging.getLogger(__name__)

NAMESPACE = "kartra-mcp:"


@dataclass(frozen=True)
class SharedState:
    """The shared stores, or None for each where this process keeps its own.

    `tenant_state`, when shared, gives each hosted tenant stores under keys of its own.
    """

    pending: PendingStore | None = None
    refunds: RefundLedger | None = None
    critical_cap: CriticalCap | None = None
    tenant_state: Callable[[str, float], TenantState] | None = None
    approvals: ApprovalStore | None = None

    def state_for(self, confirmation_ttl: float) -> Callable[[str], TenantState] | None:
        """What `TenantRuntimes(state_for=...)` takes: None keeps each tenant's state in this process."""
        make = self.tenant_state
        return None if make is None else lambda tenant: make(tenant, confirmation_ttl)


@asynccontextmanager
async def shared_state(settings: Settings, *, sandbox: bool) -> AsyncIterator[SharedState]:
    """Redis when `KARTRA_MCP_REDIS_URL` is set (the sandbox's play under keys of its own), else nothing shared.

    A Redis that does not answer at start is logged, not fatal: reads work, and whatever needs it is refused.
    """
    if settings.redis_url is None:
        yield SharedState()
        return
    from kartra_mcp.state.redis_approvals import RedisApprovalStore  # only when configured
    from kartra_mcp.state.redis_store import (
        RedisCriticalCap,
        RedisPendingStore,
        RedisRefundLedger,
        RedisState,
        redis_client,
    )

    client = redis_client(settings.redis_url.get_secret_value())
    try:
        state = RedisState(client, NAMESPACE + ("sandbox:" if sandbox else ""))
        pending = RedisPendingStore(state)
        try:
            await pending.secret()
        except Exception as exc:  # any failure here only means "not yet"
            logger.warning("the shared state (Redis) does not answer yet: %s; writes are refused until it does", exc)
        from kartra_mcp.tools.confirm import ConfirmationBook
        from kartra_mcp.tools.tenants import TenantState

        def tenant_state(tenant: str, ttl: float) -> TenantState:
            scoped = state.scoped(f"tenant:{tenant}")
            book = ConfirmationBook(ttl=ttl, store=RedisPendingStore(scoped))
            return TenantState(book, RedisRefundLedger(scoped), RedisCriticalCap(scoped))

        yield SharedState(
            pending, RedisRefundLedger(state), RedisCriticalCap(state), tenant_state, RedisApprovalStore(state)
        )
    finally:
        await client.aclose()


@asynccontextmanager
async def audit_trail(settings: Settings, path: Path, *, sandbox: bool) -> AsyncIterator[AuditTrail]:
    """PostgreSQL when `KARTRA_MCP_AUDIT_DSN` is set (the sandbox in a table of its own), else SQLite at `path`."""
    if settings.audit_dsn is None:
        log = AuditLog(path)
        try:
            yield log
        finally:
            log.close()
        return
    from kartra_mcp.state.postgres_audit import PostgresAuditLog  # only when configured

    shared = PostgresAuditLog(settings.audit_dsn.get_secret_value(), table="sandbox_calls" if sandbox else "calls")
    await shared.start()
    try:
        yield shared
    finally:
        await shared.aclose()


def reading_audit(settings: Settings, path: Path, *, sandbox: bool) -> AuditTrail | None:
    """The log `kartra-mcp audit` reads: PostgreSQL when configured, else the SQLite file (None: none yet)."""
    if settings.audit_dsn is not None:
        from kartra_mcp.state.postgres_audit import PostgresAuditLog

        return PostgresAuditLog(settings.audit_dsn.get_secret_value(), table="sandbox_calls" if sandbox else "calls")
    return AuditLog(path, check_writable=False) if path.exists() else None


async def shared_problems(settings: Settings, *, sandbox: bool) -> dict[str, str | None]:
    """For `doctor`: each configured shared store ("Redis", "PostgreSQL") and why it cannot be used (None: it can)."""
    found: dict[str, str | None] = {}
    if settings.redis_url is not None:
        async with shared_state(settings, sandbox=sandbox) as shared:
            assert shared.pending is not None
            try:
                await shared.pending.secret()
                found["Redis"] = None
            except StateUnavailable as exc:
                found["Redis"] = str(exc)
    if settings.audit_dsn is not None:
        from kartra_mcp.state.postgres_audit import PostgresAuditLog  # only when configured

        log = PostgresAuditLog(settings.audit_dsn.get_secret_value(), table="sandbox_calls" if sandbox else "calls")
        found["PostgreSQL"] = await log.problem()
        await log.aclose()
    return found
