"""Prompts for the jobs people do with Kartra through an assistant, with argument completion."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    PaginatedRequestParams,
    Prompt,
    PromptArgument,
    PromptMessage,
    PromptReference,
    TextContent,
)

from kartra_mcp.server.resources import AUDIT_ROW_TEMPLATE
from kartra_mcp.server.runtime import Runtime
from kartra_mcp.tools.suggest import Suggester, Suggestions, matching

_NO_CONFIRMING = (
    "If a call comes back as a preview with a confirmation_id, show me the preview and wait for my explicit yes "
    "before calling confirm-action; never confirm on my behalf. If a call is refused, tell me why and stop."
)


@dataclass(frozen=True)
class _Prompt:
    name: str
    title: str
    description: str
    arguments: tuple[PromptArgument, ...]
    render: Callable[[Runtime, Mapping[str, str]], Awaitable[str]]


def _arg(name: str, description: str, *, required: bool = True) -> PromptArgument:
    return PromptArgument(name=name, description=description, required=required)


async def _find_customer(runtime: Runtime, args: Mapping[str, str]) -> str:
    return (
        f"Look up the Kartra customer {args['email']}. Call get-lead with their email, then "
        "retrieve-transactions-from-lead and retrieve-subscriptions-from-lead. Tell me who they are, what they "
        "bought (date, product, amount and currency, and what was refunded) and the state of each subscription. "
        "Only read: change nothing."
    )


async def _refund_customer(runtime: Runtime, args: Mapping[str, str]) -> str:
    which = (
        f"The transaction is {args['transaction_id']}: check with get-transaction-details that it belongs to them."
        if args.get("transaction_id")
        else "Call retrieve-transactions-from-lead and show me their sales and rebills; ask me which one to refund."
    )
    reason = f" The reason: {args['reason']}." if args.get("reason") else ""
    return (
        f"Help me refund the Kartra customer {args['email']}.{reason} {which} Then call refund-transaction with that "
        "transaction_id (give refund_amount only if I asked for a partial refund). The server shows the refund to "
        "me before anything moves: the amount, the customer, the product and what was refunded already. "
        f"{_NO_CONFIRMING} Afterwards, show me the transaction again with get-transaction-details."
    )


async def _tag_leads(runtime: Runtime, args: Mapping[str, str]) -> str:
    emails = [e.strip() for e in args["emails"].replace(";", ",").split(",") if e.strip()]
    also = (
        f" Also subscribe each of them to the list {args['list']!r} with subscribe-lead-to-list."
        if args.get("list")
        else ""
    )
    return (
        f"Assign the tag {args['tag']!r} to these Kartra leads, one assign-tag call each, naming each lead by email "
        f"only: {', '.join(emails)}.{also} Tags and lists must already exist: check with retrieve-account-tags and "
        f"retrieve-account-lists first. {_NO_CONFIRMING} Finish with one line per lead saying what was done."
    )


async def _todays_changes(runtime: Runtime, args: Mapping[str, str]) -> str:
    midnight = time.time() // 86400 * 86400
    rows = [row.as_dict() for row in await runtime.audit.read_rows(since=midnight, limit=200)]
    return (
        "Here is today's audit log of this Kartra server (UTC day, newest first, arguments redacted):\n\n"
        f"{json.dumps(rows, indent=1, default=str)}\n\n"
        "Summarise what was changed in Kartra today: each change with its tool, the lead or transaction it touched, "
        "how it was confirmed and its outcome; then what was refused or declined. For any outcome 'unknown', check "
        "with a read tool whether it happened, and tell me. Change nothing."
    )


PROMPTS: dict[str, _Prompt] = {
    p.name: p
    for p in (
        _Prompt(
            "find-customer",
            "Look up a customer and their purchases",
            "A lead's details, transactions and subscriptions, read only.",
            (_arg("email", "The customer's email address."),),
            _find_customer,
        ),
        _Prompt(
            "refund-customer",
            "Refund a customer",
            "Find the transaction, preview the refund, and refund it only after you confirm.",
            (
                _arg("email", "The customer's email address."),
                _arg("transaction_id", "The transaction to refund; leave empty to choose from theirs.", required=False),
                _arg("reason", "Why, for the record.", required=False),
            ),
            _refund_customer,
        ),
        _Prompt(
            "tag-leads",
            "Tag or segment leads",
            "Assign a tag to some leads, and optionally subscribe them to a list.",
            (
                _arg("tag", "The tag to assign (it must exist)."),
                _arg("emails", "The leads' email addresses, separated by commas."),
                _arg("list", "A list to subscribe them to as well.", required=False),
            ),
            _tag_leads,
        ),
        _Prompt(
            "review-todays-changes",
            "Audit what the assistant changed today",
            "Today's audit log, summarised: changes, refusals, and outcomes to check.",
            (),
            _todays_changes,
        ),
    )
}


async def complete_value(
    suggest: Suggester, runtime: Runtime, ref: str, name: str, typed: str, context: Mapping[str, str]
) -> Suggestions:
    """What to offer for argument `name` of prompt (or resource template) `ref`, given what is typed."""
    if ref == AUDIT_ROW_TEMPLATE and name == "id":
        return matching((str(row.id) for row in await runtime.audit.read_rows(limit=100)), typed)
    if name == "email":
        return await suggest.emails(typed)
    if name == "emails":
        done, _, last = typed.rpartition(",")
        found = await suggest.emails(last.strip())
        prefix = f"{done}, " if done else ""
        return Suggestions([prefix + v for v in found.values], found.total)
    if runtime.problem is not None:
        # No connection Membrane vouches for: what follows would read one, as a tool call would not.
        return Suggestions([], 0)
    if name == "tag":
        return await suggest.tags(typed)
    if name == "list":
        return await suggest.lists(typed)
    if name == "transaction_id":
        return await suggest.transactions(context.get("email", ""), typed)
    return Suggestions([], 0)


def register(server: Server[Any], runtime: Runtime) -> None:
    """Serve the prompts and completion of their arguments (and of audit row ids)."""
    executor = runtime.executor
    suggest = Suggester(client=runtime.client, catalog=runtime.catalog, policy=executor.policy, audit=runtime.audit)

    async def list_prompts(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> Any:
        return ListPromptsResult(
            prompts=[
                Prompt(name=p.name, title=p.title, description=p.description, arguments=list(p.arguments))
                for p in PROMPTS.values()
            ]
        )

    async def get_prompt(ctx: ServerRequestContext[Any], params: GetPromptRequestParams) -> Any:
        prompt = PROMPTS.get(params.name)
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt {params.name!r}; known: {', '.join(PROMPTS)}")
        given = {k: v for k, v in (params.arguments or {}).items() if v and v.strip()}
        missing = [a.name for a in prompt.arguments if a.required and a.name not in given]
        if missing:
            raise MCPError(code=INVALID_PARAMS, message=f"{prompt.name} needs {', '.join(missing)}")
        text = await prompt.render(runtime, given)
        return GetPromptResult(
            description=prompt.description,
            messages=[PromptMessage(role="user", content=TextContent(type="text", text=text))],
        )

    async def complete(ctx: ServerRequestContext[Any], params: CompleteRequestParams) -> Any:
        ref = params.ref.name if isinstance(params.ref, PromptReference) else params.ref.uri
        context = (params.context.arguments if params.context else None) or {}
        found = await complete_value(suggest, runtime, ref, params.argument.name, params.argument.value, context)
        return CompleteResult(completion=Completion(values=found.values, total=found.total, has_more=found.has_more))

    server.add_request_handler("prompts/list", PaginatedRequestParams, list_prompts)
    server.add_request_handler("prompts/get", GetPromptRequestParams, get_prompt)
    server.add_request_handler("completion/complete", CompleteRequestParams, complete)
