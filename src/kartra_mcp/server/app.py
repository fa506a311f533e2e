"""The MCP server: tools from the executor, both protocol eras, list-changed in both."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    InputRequiredResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from pydantic import ValidationError

from kartra_mcp import __version__
from kartra_mcp.errors import ToolCallError
from kartra_mcp.schemas import check_arguments
from kartra_mcp.server import logs, progress, prompts, resources
from kartra_mcp.server.apps import APP_ONLY_META, TOOL_UI_META, ApprovalViewSource, client_supports_apps
from kartra_mcp.server.confirmers import Deployment, confirmer_for
from kartra_mcp.server.listing import ListingCache
from kartra_mcp.server.notify import ToolListNotifier
from kartra_mcp.server.runtime import Runtime
from kartra_mcp.tools import call_log
from kartra_mcp.tools.builtin import APP_ANSWER_SPEC, APP_TOOL, answer_from_app
from kartra_mcp.tools.call import CallResult
from kartra_mcp.tools.executor import Executor
from kartra_mcp.tools.policy import Target
from kartra_mcp.tools.spec import ToolSpec

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
# The JSON Schema keyword by which a tool asks clients to mirror an argument in an Mcp-Param header.
_HEADER_KEYWORD = '"x-mcp-header"'

INSTRUCTIONS = (
    "Operate a Kartra account (leads, tags, lists, sequences, memberships, products, transactions, subscriptions) "
    "through Membrane. Each tool is one Kartra action; kartra-api-request reaches anything else in Kartra's API. "
    "Tools are annotated by risk. Calls that remove things, move money, end subscriptions or revoke paid access "
    "need a person's confirmation, which the server asks for itself: in this client, in an approval view, in the "
    "person's browser or in the approval inbox. A result that says a person is being asked means nothing has "
    "been done yet; check-approval reports their answer. You cannot confirm on their behalf. "
    "Kartra reports failures as errors with a numeric type; read them before retrying. "
    "When a result says OUTCOME UNKNOWN, check with a read tool before doing anything again."
)
SANDBOX_NOTE = (
    "SANDBOX: this server runs on kartra-mcp's embedded sandbox, a simulated Kartra account with made-up data. "
    "Nothing here touches a real Kartra account or real money."
)


class KartraServer(Server[Any]):
    """A low-level server whose handshake advertises `tools.listChanged`."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        # The SDK's transports call this without options, which would advertise listChanged: false.
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


def tool_for(spec: ToolSpec, description: str, meta: dict[str, Any] | None = None) -> Tool:
    hints = spec.annotations
    return Tool(
        name=spec.name,
        meta=meta,
        title=spec.title,
        description=description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        # The title is the tool's own; repeating it in the annotations only lengthens the list.
        annotations=ToolAnnotations(
            read_only_hint=hints.read_only,
            destructive_hint=hints.destructive,
            idempotent_hint=hints.idempotent,
            open_world_hint=hints.open_world,
        ),
    )


def call_tool_result(result: CallResult) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=result.text)],
        structured_content=result.structured,
        is_error=result.is_error,
        meta=result.meta,
    )


async def _sanitize_errors(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Internal failures reach the client as a bare JSON-RPC internal error, never as their text."""
    try:
        return await call_next(ctx)
    except (MCPError, ValidationError):
        raise
    except Exception:
        logger.exception("handler for %s failed", ctx.method)
        raise MCPError(code=INTERNAL_ERROR, message="Internal server error") from None


ExecutorFor = Callable[[ServerRequestContext[Any, Any]], AbstractAsyncContextManager[Executor]]


def build_server(
    runtime: Runtime, *, page_size: int = PAGE_SIZE, deployment: Deployment | None = None
) -> tuple[KartraServer, ToolListNotifier]:
    """The MCP server over an open runtime, and the notifier to call when its tools change.

    `deployment` says which approval channels the server offers beside the client's own (the browser
    page for stdio, the inbox for HTTP); without it, only the client's channels.
    """
    executor = runtime.executor

    holding = contextlib.nullcontext(executor)  # one object for every call: no generator per call

    def the_one(ctx: ServerRequestContext[Any, Any]) -> contextlib.nullcontext[Executor]:
        return holding

    def input_schema(name: str) -> dict[str, Any] | None:
        spec = executor.listed(name) or (APP_ANSWER_SPEC if name == APP_ANSWER_SPEC.name else None)
        return spec.input_schema if spec else None

    instructions = INSTRUCTIONS if runtime.sandbox is None else f"{SANDBOX_NOTE}\n\n{INSTRUCTIONS}"
    if runtime.problem is not None:
        instructions = f"AT START: {runtime.problem}\n\n{instructions}"
    server, notifier = serve_executors(
        the_one,
        input_schema=input_schema,
        instructions=instructions,
        page_size=page_size,
        problem=lambda: runtime.problem,
        deployment=deployment,
    )
    resources.register(server, notifier, [*resources.default_sources(runtime), ApprovalViewSource()])
    logs.register(server, logs.redactor_for(runtime), logging.getLogger("kartra_mcp"))
    progress.register(server)
    prompts.register(server, runtime)
    return server, notifier


def serve_executors(
    executor_for: ExecutorFor,
    *,
    input_schema: Callable[[str], Mapping[str, Any] | None],
    instructions: str,
    page_size: int = PAGE_SIZE,
    problem: Callable[[], str | None] = lambda: None,
    deployment: Deployment | None = None,
) -> tuple[KartraServer, ToolListNotifier]:
    """The MCP server over whichever executor `executor_for` gives each request (one, or the caller's tenant's).

    While `problem()` says why nothing can be sent (no connection), calls return that and send nothing.
    """
    notifier = ToolListNotifier()

    async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        notifier.seen(ctx)
        async with executor_for(ctx) as executor:
            return _page_of(
                executor, params, page_size, apps=executor.approvals is not None and client_supports_apps(ctx)
            )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        notifier.seen(ctx)
        reason = problem()
        if reason is not None:  # no connection to send anything to: say why, send nothing
            return CallToolResult(content=[TextContent(type="text", text=reason)], is_error=True)
        with call_log.logged(params.name) as record:
            async with executor_for(ctx) as executor:
                if params.name == APP_TOOL and executor.approvals is not None and client_supports_apps(ctx):
                    answered = await _answer_from_app(executor, params.arguments or {})
                    record.outcome = "failed" if answered.is_error else "success"
                    return answered
                channels = Deployment(approvals=executor.approvals) if deployment is None else deployment
                confirmer = confirmer_for(ctx, params, channels)
                result = await executor.call(params.name, params.arguments, confirmer)
            record.result = result
        if result.awaiting is not None:
            return confirmer.input_required(result.awaiting)
        return call_tool_result(result)

    server = KartraServer(
        "kartra-mcp",
        version=__version__,
        title="Kartra (via Membrane)",
        description="Kartra's actions as tools, with guardrails a person controls.",
        instructions=instructions,
        website_url="https://github.com/kartra-mcp/kartra-mcp",
        get_tool_input_schema=declaring_headers(input_schema),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=ListenHandler(notifier.bus),
    )
    server.middleware.append(_sanitize_errors)
    server.middleware.append(ListingCache(executor_for, seen=notifier.seen))
    return server, notifier


def declaring_headers(
    lookup: Callable[[str], Mapping[str, Any] | None],
) -> Callable[[str], Mapping[str, Any] | None]:
    """`lookup`, answering only with schemas that declare `x-mcp-header` properties (else None).

    The SDK walks the called tool's schema on every stateless-era call to check `Mcp-Param-*`
    headers against such properties; a schema without any has nothing to check, and None tells the
    SDK so. Whether a schema declares any is worked out once per schema.
    """
    declares: dict[int, tuple[Mapping[str, Any], bool]] = {}

    def lookup_declaring(name: str) -> Mapping[str, Any] | None:
        schema = lookup(name)
        if schema is None:
            return None
        known = declares.get(id(schema))
        if known is None or known[0] is not schema:
            if len(declares) >= 4096:
                declares.clear()
            known = declares[id(schema)] = (schema, _HEADER_KEYWORD in json.dumps(schema))
        return schema if known[1] else None

    return lookup_declaring


async def _answer_from_app(executor: Executor, arguments: dict[str, Any]) -> CallToolResult:
    """The approval view's button: the app-only tool, checked against the view's secret."""
    try:
        check_arguments(APP_TOOL, APP_ANSWER_SPEC.input_schema, arguments)
        return call_tool_result(await answer_from_app(executor.approvals, arguments))
    except ToolCallError as exc:
        return call_tool_result(CallResult(str(exc), {"error": type(exc).__name__}, is_error=True))


def _may_ask(executor: Executor, spec: ToolSpec) -> bool:
    """Whether a call of this tool may need a person (so an MCP Apps host should render the view for it)."""
    if spec.kind in ("proxy", "run"):
        return True
    decided = executor.policy.decide(spec.name, [Target(spec.action_key, spec.risk)])
    return spec.kind == "action" and decided.mode == "confirm"


def _page_of(
    executor: Executor, params: PaginatedRequestParams | None, page_size: int, *, apps: bool = False
) -> ListToolsResult:
    """A page of the tools; an MCP Apps host also gets the approval view on those that ask, and its app-only tool."""
    tools = [
        tool_for(s, executor.describe(s), TOOL_UI_META if apps and _may_ask(executor, s) else None)
        for s in executor.tools()
    ]
    if apps:
        tools.append(tool_for(APP_ANSWER_SPEC, APP_ANSWER_SPEC.description, APP_ONLY_META))
    specs = tools
    try:
        start = int(params.cursor) if params and params.cursor else 0
    except ValueError:
        raise MCPError(code=INVALID_PARAMS, message="Unknown cursor; list the tools from the start") from None
    if not 0 <= start <= len(specs):
        raise MCPError(code=INVALID_PARAMS, message="Unknown cursor; list the tools from the start")
    page = specs[start : start + page_size]
    following = start + page_size
    return ListToolsResult(
        tools=page,
        next_cursor=str(following) if following < len(specs) else None,
    )
