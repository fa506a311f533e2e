"""Resources: the effective policy, the recent audit rows (and one by id), the sandbox's state.

Each group is a `ResourceSource`; `register` serves every source given to it, so another kind
(pending approvals, say) is one more source, not a change here. Clients watch a resource with
`resources/subscribe` (2025-11-25) or a `subscriptions/listen` filter (2026-07-28); every finished
tool call tells them the audit log, the caps' use and the sandbox may have changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.types import (
    INVALID_PARAMS,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)

from kartra_mcp.errors import AuditUnavailable, StateUnavailable
from kartra_mcp.server.notify import ToolListNotifier
from kartra_mcp.server.runtime import Runtime
from kartra_mcp.tools.policy import Target
from kartra_mcp.tools.spec import Risk

POLICY_URI = "kartra-mcp://policy"
AUDIT_URI = "kartra-mcp://audit/recent"
AUDIT_ROW_TEMPLATE = "kartra-mcp://audit/{id}"
SANDBOX_URI = "kartra-mcp://sandbox/state"
RECENT_ROWS = 50
# A row is found by id among this many of the newest; older rows are in the audit command's reach.
_ROW_WINDOW = 1000
_ROW_URI = re.compile(r"kartra-mcp://audit/(\d+)")
JSON = "application/json"


class ResourceSource(Protocol):
    """One group of resources: what it lists, and how it reads a URI (None: not one of its own)."""

    def resources(self) -> list[Resource]: ...

    def templates(self) -> list[ResourceTemplate]: ...

    async def read(self, uri: str) -> Any | None: ...

    def changed_by_calls(self) -> list[str]:
        """The URIs a finished tool call may have changed."""
        ...


class _RuntimeSource:
    """A source that reads the running server; no templates unless it says otherwise."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def templates(self) -> list[ResourceTemplate]:
        return []


def _json_resource(uri: str, name: str, title: str, description: str) -> Resource:
    return Resource(uri=uri, name=name, title=title, description=description, mime_type=JSON)


class PolicySource(_RuntimeSource):
    """What each class and action does under the policy in force, and how much of each cap is used."""

    def resources(self) -> list[Resource]:
        return [
            _json_resource(
                POLICY_URI,
                "policy",
                "Effective policy",
                "What each risk class and each tool does (allow, confirm, deny), and the caps with how much of "
                "them is used.",
            )
        ]

    def changed_by_calls(self) -> list[str]:
        return [POLICY_URI]

    async def read(self, uri: str) -> Any | None:
        if uri != POLICY_URI:
            return None
        executor = self._runtime.executor
        policy = executor.policy
        hour_cap = policy.max_critical_calls_per_hour
        used: int | None
        try:
            # Counted as the cap counts: this connection's critical calls that may have run.
            used = await executor.critical_cap.used(executor.connection_id)
        except (AuditUnavailable, StateUnavailable):
            used = None  # the log cannot be read now; the rest of the policy still can
        return {
            "source": policy.source,
            "read_only": policy.read_only,
            "kill_switch": policy.kill_switch,
            "when_the_client_cannot_ask": policy.on_unconfirmable,
            "confirmation_ttl_seconds": policy.confirmation_ttl,
            "classes": {risk.value: policy.decide("", [Target(None, risk)]).mode for risk in Risk},
            "actions": dict(policy.actions),
            "tools": {
                spec.name: {
                    "risk": spec.risk.value,
                    "decision": policy.decide(spec.name, [Target(spec.action_key, spec.risk)]).mode,
                }
                for spec in executor.tools()
                if spec.kind == "action"
            },
            "caps": {
                "max_refund_amount": policy.max_refund_amount,
                "critical_calls_per_hour": {"limit": hour_cap, "used_in_the_last_hour": used},
            },
        }


class AuditSource(_RuntimeSource):
    """The newest audit rows, and any recent row by id."""

    def resources(self) -> list[Resource]:
        return [
            _json_resource(
                AUDIT_URI,
                "audit-recent",
                "Recent audit rows",
                f"The {RECENT_ROWS} newest rows of the audit log, newest first (arguments redacted).",
            )
        ]

    def templates(self) -> list[ResourceTemplate]:
        return [
            ResourceTemplate(
                uri_template=AUDIT_ROW_TEMPLATE,
                name="audit-row",
                title="One audit row",
                description="One row of the audit log by its id (as listed in kartra-mcp://audit/recent).",
                mime_type=JSON,
            )
        ]

    def changed_by_calls(self) -> list[str]:
        return [AUDIT_URI]

    async def read(self, uri: str) -> Any | None:
        audit = self._runtime.audit
        if uri == AUDIT_URI:
            return [row.as_dict() for row in await audit.read_rows(limit=RECENT_ROWS)]
        match = _ROW_URI.fullmatch(uri)
        if match is None:
            return None
        wanted = int(match.group(1))
        row = next((r for r in await audit.read_rows(limit=_ROW_WINDOW) if r.id == wanted), None)
        if row is None:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"No audit row {wanted} among the {_ROW_WINDOW} newest; read {AUDIT_URI} for current ids.",
            )
        return row.as_dict()


class SandboxSource(_RuntimeSource):
    """The embedded sandbox's counts and sample records (listed only when serving the sandbox)."""

    def resources(self) -> list[Resource]:
        if self._runtime.sandbox is None:
            return []
        return [
            _json_resource(
                SANDBOX_URI,
                "sandbox-state",
                "Sandbox state",
                "How many of each kind of record the simulated Kartra account holds, and sample records.",
            )
        ]

    def changed_by_calls(self) -> list[str]:
        return [SANDBOX_URI] if self._runtime.sandbox is not None else []

    async def read(self, uri: str) -> Any | None:
        if uri != SANDBOX_URI or self._runtime.sandbox is None:
            return None
        return self._runtime.sandbox.state()


def default_sources(runtime: Runtime) -> list[ResourceSource]:
    return [PolicySource(runtime), AuditSource(runtime), SandboxSource(runtime)]


def register(server: Server[Any], notifier: ToolListNotifier, sources: Sequence[ResourceSource]) -> None:
    """Serve `sources` on `server`, and tell watchers after each tool call what may have changed."""

    async def list_resources(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> Any:
        notifier.seen(ctx)
        return ListResourcesResult(resources=[r for s in sources for r in s.resources()])

    async def list_templates(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> Any:
        return ListResourceTemplatesResult(resource_templates=[t for s in sources for t in s.templates()])

    async def read_resource(ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        for source in sources:
            data = await source.read(uri)
            if isinstance(data, ReadResourceResult):  # a source with its own media type (the MCP Apps view)
                return data
            if data is not None:
                text = json.dumps(data, indent=2, default=str)
                return ReadResourceResult(contents=[TextResourceContents(uri=uri, mime_type=JSON, text=text)])
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown resource {uri}; list them with resources/list.")

    async def subscribe(ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> Any:
        notifier.watch(ctx, str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> Any:
        notifier.watch(ctx, str(params.uri), on=False)
        return EmptyResult()

    async def after_calls(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        finally:
            if ctx.method == "tools/call":
                for uri in dict.fromkeys(u for s in sources for u in s.changed_by_calls()):
                    await notifier.resource_updated(uri)

    server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    server.add_request_handler("resources/templates/list", PaginatedRequestParams, list_templates)
    server.add_request_handler("resources/read", ReadResourceRequestParams, read_resource)
    server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    server.middleware.append(after_calls)
