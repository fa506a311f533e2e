"""Everything a running server holds, opened and closed in one place."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2

from kartra_mcp.config import Settings
from kartra_mcp.membrane import BearerToken, Connection, MembraneClient, RetryPolicy, auth_from_settings
from kartra_mcp.state import audit_trail, shared_state
from kartra_mcp.tools.approval import Approvals
from kartra_mcp.tools.audit import AuditTrail, sandbox_audit_path
from kartra_mcp.tools.catalog import Catalog
from kartra_mcp.tools.confirm import ConfirmationBook
from kartra_mcp.tools.connection import ConnectionMemory
from kartra_mcp.tools.executor import BUILTIN_NAMES, Executor
from kartra_mcp.tools.kartra_ops import ACTIONS
from kartra_mcp.tools.policy import Policy, load_policy
from kartra_mcp.tools.upkeep import CatalogUpkeep

if TYPE_CHECKING:
    from kartra_mcp.sandbox import Sandbox

logger = logging.getLogger(__name__)

SANDBOX_URL = "http://sandbox.kartra-mcp.invalid"


@dataclass
class Runtime:
    """The open client, the catalog and its upkeep, and the call pipeline."""

    settings: Settings
    client: MembraneClient
    upkeep: CatalogUpkeep
    executor: Executor
    audit: AuditTrail
    sandbox: Sandbox | None = None

    @property
    def catalog(self) -> Catalog:
        return self.upkeep.catalog

    @property
    def connection(self) -> Connection | None:
        """The Kartra connection, once Membrane has confirmed it (a start from the cache has not yet)."""
        return self.upkeep.connection

    @property
    def problem(self) -> str | None:
        """Why no call can run right now, and what to do; None when calls can go to Membrane."""
        return self.upkeep.problem


def load_effective_policy(settings: Settings) -> Policy:
    """The policy file (or the defaults), made stricter by `KARTRA_MCP_READ_ONLY`/`KILL_SWITCH`."""
    return load_policy(settings.policy).with_overrides(read_only=settings.read_only, kill_switch=settings.kill_switch)


def membrane_client(
    settings: Settings,
    *,
    sandbox: Sandbox | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> MembraneClient:
    """A client for the real Membrane, or for the in-process sandbox."""
    if sandbox is not None:
        from kartra_mcp.sandbox import asgi_transport  # a served real account never loads the sandbox

        return MembraneClient(
            base_url=SANDBOX_URL,
            auth=BearerToken(sandbox.token),
            transport=asgi_transport(sandbox),
            timeout=settings.request_timeout,
            retry=retry,
        )
    return MembraneClient(
        base_url=settings.membrane_api_url,
        auth=auth_from_settings(settings),
        transport=transport,
        timeout=settings.request_timeout,
        retry=retry,
    )


def credential_identity(settings: Settings) -> str:
    """Which Membrane credentials these are, as a digest that gives none of them away."""
    token = settings.membrane_token.get_secret_value() if settings.membrane_token else ""
    parts = (token, settings.membrane_workspace_key or "", settings.membrane_tenant_key or "")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def audit_path(settings: Settings, *, sandbox: bool) -> Path:
    """The audit log to use: the sandbox keeps its own beside the real one, so play never counts."""
    return sandbox_audit_path(settings.audit_db) if sandbox else settings.audit_db


def known_names(catalog: Catalog) -> set[str]:
    """Every name a policy entry may use: tools, action keys (listed or known), built-in tools."""
    return (
        {s.name for s in catalog.specs}
        | {s.action_key for s in catalog.specs if s.action_key}
        | set(ACTIONS)
        | set(BUILTIN_NAMES)
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    sandbox: Sandbox | None = None,
    policy: Policy | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    start_timeout: float | None = None,
    audit: AuditTrail | None = None,
    approver_token: str | None = None,
) -> AsyncIterator[Runtime]:
    """Connect to Membrane (or the sandbox), find the Kartra connection and load its tools.

    Without `start_timeout`, Membrane must answer (a command run once). With it (the server), a usable
    cache is served at once, and a Membrane that does not answer within `start_timeout` seconds leaves
    a runtime whose `problem` says so; the caller runs `upkeep.keep_current` to catch up.
    `audit` is a log the caller opened and closes; by default the one the settings name (see `audit_trail`).
    Confirmations, pending approvals, the hourly cap and refund holds live in Redis when the settings name one.
    `approver_token` (HTTP deployments) puts approval pages behind the approver credential.
    """
    policy = policy or load_effective_policy(settings)
    if policy.on_unconfirmable == "token":
        logger.warning(
            'the policy (%s) sets on_unconfirmable = "token": where no person can be asked, calls return a '
            "confirmation id that the model itself can redeem with confirm-action. Use it only where a person "
            "watches every call.",
            policy.source,
        )
    async with AsyncExitStack() as stack:
        if audit is None:
            path = audit_path(settings, sandbox=sandbox is not None)
            audit = await stack.enter_async_context(audit_trail(settings, path, sandbox=sandbox is not None))
        shared = await stack.enter_async_context(shared_state(settings, sandbox=sandbox is not None))
        client = await stack.enter_async_context(
            membrane_client(settings, sandbox=sandbox, transport=transport, retry=retry)
        )
        cache_dir = None if sandbox else settings.cache_dir
        who = credential_identity(settings)
        memory = ConnectionMemory(cache_dir, client.base_url, who) if cache_dir else None
        known = settings.connection_id or (memory.recall() if memory else None)
        catalog = Catalog(client, known or "", cache_dir=cache_dir, reserved=BUILTIN_NAMES, risks=policy.risk)
        upkeep = CatalogUpkeep(client, catalog, connection_id=settings.connection_id, memory=memory)
        if start_timeout is None:
            await upkeep.resolve()
            await catalog.start()
        else:
            await upkeep.start(start_timeout)
        # Before the first catalog arrives, every custom action would look unknown.
        for key in policy.unknown_actions(known_names(catalog)) if catalog.specs else ():
            logger.warning(
                "the policy (%s) names %r, which is neither a tool nor a Kartra action: check the "
                "spelling; the entry does nothing",
                policy.source,
                key,
            )
        # Without Redis, pending confirmations live in this process only, and so does the secret that signs them.
        book = ConfirmationBook(ttl=policy.confirmation_ttl, store=shared.pending)
        approvals = Approvals(audit, ttl=policy.confirmation_ttl, approver_token=approver_token, store=shared.approvals)
        executor = Executor(
            client=client,
            catalog=catalog,
            policy=policy,
            book=book,
            audit=audit,
            tool_mode=settings.tool_mode,
            approvals=approvals,
            refunds=shared.refunds,
            critical_cap=shared.critical_cap,
        )
        if upkeep.problem is None:
            logger.info(
                "Kartra connection %s: %d tools%s",
                upkeep.connection.name if upkeep.connection else catalog.connection_id,
                len(executor.tools()),
                " from the cache (checking with Membrane in the background)" if catalog.loaded_from_cache else "",
            )
        yield Runtime(settings, client, upkeep, executor, audit, sandbox)
