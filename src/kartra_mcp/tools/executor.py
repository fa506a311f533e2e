"""One tool call, from name and arguments to result.

```
look up the tool          unknown -> error, nothing sent
check the arguments       invalid -> every bad path, nothing sent
classify and decide       deny -> refused (audited)
preview with facts        impossible or over a cap -> refused before anyone is asked
ask the person            through the Confirmer the server supplies; no -> declined (audited)
record the intent         audit row, outcome `unknown`
send                      a read may be retried; a write never is
record the outcome        success, failed, or unknown when a write's answer was lost
```

It knows nothing of MCP: the server supplies a `Confirmer` that asks the person by elicitation,
or says it cannot.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

import anyio

from kartra_mcp import phpform
from kartra_mcp.errors import (
    ActionDenied,
    ArgumentProblem,
    ConfirmationDeclined,
    ConfirmationInvalid,
    InvalidArgumentsError,
    MembraneAccessDenied,
    MembraneAnswerEncoded,
    MembraneAnswerTooLarge,
    MembraneApiError,
    MembraneBadRequest,
    MembraneError,
    MembraneNotAuthenticated,
    MembraneNotFound,
    MembraneRateLimited,
    ProxyRequestRefused,
    StateUnavailable,
    ToolCallError,
    TooManyPending,
    UnknownToolError,
)
from kartra_mcp.membrane import MembraneClient
from kartra_mcp.schemas import argument_problems, checked_arguments
from kartra_mcp.tools import call_log
from kartra_mcp.tools.answers import garbled_answer, resend_garbled
from kartra_mcp.tools.approval import CHECK_TOOL, CONFIRM_TOOL, Approval, Approvals, TokenChannel
from kartra_mcp.tools.audit import AuditTrail, Journal, Outcome, redact
from kartra_mcp.tools.builtin import CHECK_APPROVAL_SPEC, check_approval
from kartra_mcp.tools.call import (
    Accepted,
    Answer as Answer,
    CallResult,
    ConfirmationRequest,
    Confirmer,
    Declined,
    Deferred,
    NoConfirmer as NoConfirmer,
    Pending,
    Unavailable,
)
from kartra_mcp.tools.catalog import Catalog
from kartra_mcp.tools.confirm import ConfirmationBook
from kartra_mcp.tools.credentials import refuse_credentials, without_credentials
from kartra_mcp.tools.critical_cap import AuditCountedCap, CriticalCap
from kartra_mcp.tools.kartra_ops import COMMANDS, Invocation, ambiguity, invocations_for_action, one_lead_note
from kartra_mcp.tools.limits import check_bounds, loads
from kartra_mcp.tools.policy import Decision, Policy, Target
from kartra_mcp.tools.preview import Preview, Previewer, unchecked
from kartra_mcp.tools.proxy import FORM, PROXY_TOOL, build_request, proxy_spec
from kartra_mcp.tools.refund_ledger import (
    MemoryRefundLedger,
    RefundHold,
    RefundLedger,
    hold_refund,
    refund_made,
    settling,
)
from kartra_mcp.tools.results import CHECK_WITH, describe_failure, kartra_failure, render
from kartra_mcp.tools.spec import Risk, ToolSpec

logger = logging.getLogger(__name__)

SEARCH_TOOL = "search-actions"
RUN_TOOL = "run-action"
BUILTIN_NAMES = frozenset({PROXY_TOOL, CONFIRM_TOOL, SEARCH_TOOL, RUN_TOOL, CHECK_TOOL})

# The rows the call in progress owes the audit log, written when it ends (see `Journal`).
_JOURNAL: ContextVar[Journal] = ContextVar("kartra_mcp_journal")


@dataclass(frozen=True)
class _Sent:
    data: Any
    status: int | None


@dataclass
class _Call:
    """A checked call, ready for the policy and for sending."""

    spec: ToolSpec
    arguments: dict[str, Any]
    risk: Risk
    targets: list[Target]
    invocations: list[Invocation]
    send: Callable[[], Awaitable[_Sent]]
    structured: Callable[[_Sent], dict[str, Any]] = field(default=lambda sent: sent.data)
    # What the audit log records: what is sent, where that differs from the arguments.
    audited: Mapping[str, Any] | None = None

    @property
    def action(self) -> str | None:
        return self.spec.action_key or ",".join(i.cmd for i in self.invocations) or None

    @property
    def shown(self) -> Mapping[str, Any]:
        return self.audited if self.audited is not None else self.arguments


# -- the built-in tools ----------------------------------------------------------------------------

# Repeated on every tool that needs confirming, so it is kept short (tools/list is read on every turn).
_HOW_CONFIRMED = (
    "the server asks them when it can; else the result is a preview and a confirmation_id: show it, wait for "
    "their explicit yes, then call confirm-action. Never confirm for them."
)
# Without confirmation ids (the default), the model only waits for the person the server asks.
_HOW_ASKED = (
    "the server asks them itself (in this client, in an approval view, in their browser or in the approval inbox) "
    "and the result says which; you cannot confirm it."
)

_CONFIRM_SPEC = ToolSpec(
    name=CONFIRM_TOOL,
    title="Confirm a previewed action",
    description=(
        "Run a call that a person has confirmed. Use it only with the confirmation_id from a preview that you "
        "showed to the person, and only after they explicitly said yes. It runs exactly the previewed call, once, "
        "within a few minutes of the preview. Never call it on your own initiative."
    ),
    input_schema={
        "type": "object",
        "properties": {"confirmation_id": {"type": "string", "description": "The id from the preview."}},
        "required": ["confirmation_id"],
        "additionalProperties": False,
    },
    risk=Risk.CRITICAL,
    kind="confirm",
)
_SEARCH_SPEC = ToolSpec(
    name=SEARCH_TOOL,
    title="Search Kartra actions",
    description=(
        "Find Kartra actions by what you want to do (e.g. 'refund a payment', 'tag a lead'). Returns the best "
        "matches with their full input schemas, risk and whether a person must confirm them; run one with "
        "run-action."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 200, "description": "What you want to do."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 25,
                "default": 8,
                "description": "How many actions to return.",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    risk=Risk.READ,
    kind="search",
)
_RUN_SPEC = ToolSpec(
    name=RUN_TOOL,
    title="Run a Kartra action",
    description=(
        "Run one Kartra action found with search-actions. 'input' must match that action's input schema; it may be "
        "an object or a JSON string. Guardrails apply as to the action itself: some actions need a person's "
        "confirmation."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "action": {"type": "string", "description": "The action's name (key) as search-actions returned it."},
            "input": {
                "anyOf": [{"type": "object"}, {"type": "string"}],
                "description": "The action's arguments, as an object or a JSON string.",
            },
        },
        "required": ["action"],
        "additionalProperties": False,
    },
    risk=Risk.CRITICAL,
    kind="run",
)


class Executor:
    """Runs tool calls under the policy, for one connection."""

    def __init__(
        self,
        *,
        client: MembraneClient,
        catalog: Catalog,
        policy: Policy,
        book: ConfirmationBook,
        audit: AuditTrail,
        tool_mode: Literal["actions", "search"] = "actions",
        clock: Callable[[], float] = time.time,
        approvals: Approvals | None = None,
        refunds: RefundLedger | None = None,
        critical_cap: CriticalCap | None = None,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.policy = policy
        self.book = book
        self.audit = audit
        self.tool_mode = tool_mode
        self._clock = clock
        self.refunds = refunds or MemoryRefundLedger()
        self.critical_cap = critical_cap or AuditCountedCap(audit, clock=clock)
        self.previewer = Previewer(
            self._read,
            max_refund_amount=policy.max_refund_amount,
            counted=lambda transaction, seen: self.refunds.counted(self.connection_id, transaction, seen),
        )
        self._proxy = proxy_spec()
        self._listed: tuple[int, Policy, str, list[ToolSpec], dict[str, ToolSpec]] | None = None
        self._builtins = {s.name: s for s in (self._proxy, _CONFIRM_SPEC, _SEARCH_SPEC, _RUN_SPEC, CHECK_APPROVAL_SPEC)}
        self.approvals = approvals
        if approvals is not None:
            approvals.settler = self._settle

    @property
    def connection_id(self) -> str:
        return self.catalog.connection_id

    # -- listing ------------------------------------------------------------------------------

    def tools(self) -> list[ToolSpec]:
        """The tools to list, in a stable order, under the policy; rebuilt only when the catalog or policy changes.

        Every call looks its tool up here, so deciding the policy for each tool each time would cost
        more than the lookup.
        """
        return list(self._listed_now()[3])

    def listed(self, name: str) -> ToolSpec | None:
        """The listed tool of that name, if any."""
        return self._listed_now()[4].get(name)

    def _listed_now(self) -> tuple[int, Policy, str, list[ToolSpec], dict[str, ToolSpec]]:
        memo = self._listed
        key = (self.catalog.generation, self.policy, self.tool_mode)
        if memo is None or memo[0] != key[0] or memo[1] is not key[1] or memo[2] != key[2]:
            listing = self._listing()
            memo = self._listed = (*key, listing, {s.name: s for s in listing})
        return memo

    def _listing(self) -> list[ToolSpec]:
        policy = self.policy
        if self.tool_mode == "search":
            listed = [s for s in (_SEARCH_SPEC, _RUN_SPEC) if policy.actions.get(s.name) != "deny"]
        else:
            listed = [s for s in self.catalog.specs if policy.visible(s.name, s.risk, s.action_key)]
        if policy.actions.get(PROXY_TOOL) != "deny":
            listed.append(self._proxy)
        may_ask = any(m == "confirm" for m in (*policy.classes.values(), *policy.actions.values()))
        if may_ask and not (policy.read_only or policy.kill_switch):
            if self.approvals is not None:
                listed.append(CHECK_APPROVAL_SPEC)
            if policy.on_unconfirmable == "token" and policy.actions.get(CONFIRM_TOOL) != "deny":
                listed.append(_CONFIRM_SPEC)
        return listed

    def describe(self, spec: ToolSpec) -> str:
        """The tool's description, with what the policy does to it, in words for the model."""
        if spec.kind in ("confirm", "search", "check", "app"):
            return spec.description
        how = _HOW_CONFIRMED if self.policy.on_unconfirmable == "token" else _HOW_ASKED
        notes: list[str] = []
        if spec.kind == "action":
            if spec.risk is not Risk.READ:  # a read is the unremarkable case, and says so in its readOnlyHint
                notes.append(f"Risk: {spec.risk.value}.")
            if lead_note := one_lead_note(spec.action_key, spec.input_schema):
                notes.append(lead_note)
            if self.policy.decide(spec.name, [Target(spec.action_key, spec.risk)]).mode == "confirm":
                notes.append("Needs a person's confirmation: " + how)
            if spec.risk is Risk.CRITICAL:
                notes.append("Cannot be undone.")
        elif self.policy.read_only or self.policy.kill_switch:
            notes.append("Only reads are allowed right now (read-only mode or the kill switch).")
        else:
            notes.append("Calls that change or remove things may need a person's confirmation before they run: " + how)
        return f"{spec.description}\n\n{' '.join(notes)}" if notes else spec.description

    # -- calling ------------------------------------------------------------------------------

    async def call(self, name: str, arguments: Mapping[str, Any] | None, confirmer: Confirmer) -> CallResult:
        """Run one call; failures the model can act on come back as error results, never raised."""
        journal = Journal(self.audit)
        token = _JOURNAL.set(journal)
        try:
            result = await self._call(name, dict(arguments or {}), confirmer)
        except ToolCallError as exc:
            result = CallResult(str(exc), {"error": type(exc).__name__, "message": str(exc)}, is_error=True)
        finally:
            _JOURNAL.reset(token)
            notes = await journal.flush_shielded()
        if not notes:
            return result
        structured = None if result.structured is None else {**result.structured, "audit_log_error": notes}
        return replace(result, text="\n\n".join([result.text, *notes]), structured=structured)

    async def _call(self, name: str, arguments: dict[str, Any], confirmer: Confirmer) -> CallResult:
        spec = self._lookup(name, arguments)
        arguments = self._check_arguments(spec, arguments)
        if spec.kind == "confirm":
            return await self._confirm_action(str(arguments["confirmation_id"]))
        if spec.kind == "search":
            return await self._search(str(arguments["query"]), int(arguments.get("limit", 8)))
        if spec.kind == "check":
            return await check_approval(self.approvals, str(arguments["approval_id"]), self.connection_id)
        if spec.kind == "run":
            spec, arguments = self._run_target(arguments)
            arguments = self._check_arguments(spec, arguments)
        call = self._prepare(spec, arguments)
        decision = self.policy.decide(spec.name, call.targets)
        if decision.mode == "deny":
            self._refuse(call, decision.reason)
        self._check_targets(call)
        try:
            await self._check_rate(call)
            preview: Preview | None = None
            if decision.mode == "confirm" or self._refund_capped(call):
                preview = await self._preview(call)
            if decision.mode == "allow":
                return await self._execute(call, decision, "policy")
            assert preview is not None
            return await self._ask(call, decision, preview, confirmer)
        except (StateUnavailable, TooManyPending) as exc:
            # Raised only before anything is sent: the refusal keeps its row like any other.
            self._record(call, decision.mode, None, "refused", error=str(exc))
            raise

    def _lookup(self, name: str, arguments: Mapping[str, Any]) -> ToolSpec:
        listed = self._listed_now()[4]
        spec = self._builtins.get(name) or (self.catalog.get(name) if self.tool_mode == "actions" else None)
        if spec is not None and name in listed:
            return spec
        if spec is not None:
            self._refuse_hidden(spec, arguments)
        raise UnknownToolError(name, difflib.get_close_matches(name, sorted(listed), n=3))

    def _check_arguments(self, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments to send (whole numbers taken as text where the schema wants text), once they carry no
        Kartra credential and pass the bounds and the schema; a refused attempt at a tool that is not a read
        leaves a row."""
        if spec.kind == "action":
            refuse_credentials(spec, arguments, self._audit)
        try:
            check_bounds(spec.name, arguments)
            checked: dict[str, Any] = checked_arguments(spec.name, spec.input_schema, arguments)
            return checked
        except InvalidArgumentsError as exc:
            if spec.risk is not Risk.READ:
                shown = without_credentials(arguments)
                self._audit(spec.name, spec.action_key, shown, spec.risk, "deny", None, "refused", str(exc))
            raise

    def _refuse_hidden(self, spec: ToolSpec, arguments: Mapping[str, Any]) -> NoReturn:
        """A tool the policy hides was called anyway: refuse it, and say so in the audit log."""
        reason = self.policy.decide(spec.name, [Target(spec.action_key, spec.risk)]).reason or (
            f"{spec.name} is not available under the current policy."
        )
        self._audit(
            spec.name, spec.action_key, without_credentials(arguments), spec.risk, "deny", None, "refused", reason
        )
        raise ActionDenied(reason)

    def _run_target(self, arguments: Mapping[str, Any]) -> tuple[ToolSpec, dict[str, Any]]:
        wanted = str(arguments["action"])
        spec = (
            self.catalog.get(wanted)
            or self.catalog.by_action_key(wanted)
            or next((s for s in self.catalog.specs if s.action_id == wanted), None)
        )
        if spec is None:
            raise UnknownToolError(wanted, [s.name for s in self._local_search(wanted, 3)])
        raw = arguments.get("input", {})
        try:
            if isinstance(raw, str):
                raw = loads(raw, tool=RUN_TOOL, where="input") if raw.strip() else {}
            if not isinstance(raw, dict):
                raise InvalidArgumentsError(RUN_TOOL, [ArgumentProblem("input", "must be a JSON object")])
        except InvalidArgumentsError as exc:
            if spec.risk is not Risk.READ:
                self._audit(spec.name, spec.action_key, arguments, spec.risk, "deny", None, "refused", str(exc))
            raise
        if not self.policy.visible(spec.name, spec.risk, spec.action_key):
            self._refuse_hidden(spec, raw)
        return spec, raw

    def _prepare(self, spec: ToolSpec, arguments: dict[str, Any]) -> _Call:
        if spec.kind == "proxy":
            try:
                request = build_request(arguments)
            except ProxyRequestRefused as exc:
                shown = without_credentials(arguments)
                self._audit(spec.name, None, shown, Risk.CRITICAL, "deny", None, "refused", str(exc))
                raise
            invocations = request.invocations
            targets = [Target(i.action, i.risk) for i in invocations]

            async def send_proxy() -> _Sent:
                response = await self.client.proxy(
                    self.connection_id,
                    request.method,
                    request.path,
                    query=request.query,
                    headers=request.headers,
                    body=request.body,
                    retry_safe=request.risk is Risk.READ,
                )
                garbled = garbled_answer(response.status_code, response.body)
                if garbled is not None:
                    raise garbled
                return _Sent(response.data(), response.status_code)

            async def send_checked() -> _Sent:
                return await resend_garbled(send_proxy, self.client.retry_policy, retry_safe=request.risk is Risk.READ)

            return _Call(
                spec,
                arguments,
                request.risk,
                targets or [Target(None, request.risk)],
                invocations,
                send_checked,
                lambda sent: {"status_code": sent.status, "body": sent.data},
                audited=request.as_sent(),
            )
        assert spec.action_id is not None
        assert spec.action_key is not None
        action_id, key = spec.action_id, spec.action_key
        payload: Any = arguments[spec.wrapped] if spec.wrapped else arguments

        async def send_action() -> _Sent:
            run = await self.client.run_action(
                action_id, connection_id=self.connection_id, input=payload, retry_safe=spec.risk is Risk.READ
            )
            return _Sent(run.output, 200)

        def structured(sent: _Sent) -> dict[str, Any]:
            return sent.data if isinstance(sent.data, dict) else {"result": sent.data}

        return _Call(
            spec,
            arguments,
            spec.risk,
            [Target(key, spec.risk)],
            invocations_for_action(key, arguments),
            send_action,
            structured,
        )

    def _refund_capped(self, call: _Call) -> bool:
        """Whether the refund cap applies to this call, so its amount must be established first."""
        if self.policy.max_refund_amount is None or call.risk is not Risk.CRITICAL:
            return False
        if any(i.cmd == "refund_transaction" for i in call.invocations):
            return True
        # A critical call that may refund but whose amount kartra-mcp cannot read: refuse, fail closed.
        words = f"{call.spec.action_key or ''} {call.spec.title} {' '.join(i.cmd for i in call.invocations)}"
        unknown = [i.cmd for i in call.invocations if i.cmd not in COMMANDS]
        if unknown or any(word in words.casefold() for word in ("refund", "chargeback")):
            self._refuse(
                call,
                "A refund limit is set and the amount of this call cannot be established, so it is "
                "refused. Use refund-transaction, whose amount kartra-mcp checks.",
                rule="cap",
            )
        return False

    async def _preview(self, call: _Call) -> Preview:
        capped = self.policy.max_refund_amount is not None and any(
            i.cmd == "refund_transaction" for i in call.invocations
        )
        try:
            return await self.previewer.preview(call.spec.title, call.invocations, call.arguments)
        except ActionDenied as exc:
            self._refuse(call, exc.reason, rule=exc.rule)
        except MembraneError as exc:
            if capped:
                self._refuse(
                    call,
                    f"The refund could not be checked against the policy's limit ({exc}); nothing "
                    "was sent. Try again shortly.",
                    rule="cap",
                )
            return unchecked(call.spec.title, call.arguments, "The details could not be fetched.")

    async def _hold_refund(self, call: _Call) -> RefundHold | None:
        """Under a refund limit, reserve the refund against its transaction's limit until it is settled."""
        refund = next((i for i in call.invocations if i.cmd == "refund_transaction"), None)
        limit = self.policy.max_refund_amount
        if limit is None or refund is None:
            return None
        try:
            facts = await self.previewer.refund_facts(refund)
            hold = await hold_refund(self.refunds, self.connection_id, facts, limit)
        except ActionDenied as exc:
            self._refuse(call, exc.reason, rule=exc.rule)
        except MembraneError as exc:
            self._refuse(call, f"The refund could not be checked against the policy's limit ({exc}); nothing was sent.")
        call.send = settling(self.refunds, hold, call.send, lambda sent: refund_made(sent.status, sent.data))
        return hold

    def _check_targets(self, call: _Call) -> None:
        """A change names each target once, and a request holds at most one critical command."""
        changes = [i for i in call.invocations if i.risk is not Risk.READ]
        for invocation in changes:
            problem = ambiguity(invocation)
            if problem is not None:
                self._refuse(call, f"{problem} Nothing was sent.", rule="arguments")
        critical = [i.cmd for i in changes if i.risk is Risk.CRITICAL]
        if len(critical) > 1:
            self._refuse(
                call,
                f"One request holds {len(critical)} critical commands ({', '.join(critical)}); send each "
                "in a request of its own, so each is previewed, confirmed and counted. Nothing was "
                "sent.",
                rule="arguments",
            )

    async def _check_rate(self, call: _Call) -> None:
        """Refuse a critical call the cap already excludes, before anyone is asked about it."""
        cap = self.policy.max_critical_calls_per_hour
        if cap is not None and call.risk is Risk.CRITICAL:
            done = await self.critical_cap.used(self.connection_id)
            if done >= cap:
                self._refuse_rate(call, cap, done)

    def _refuse_rate(self, call: _Call, cap: int, done: int) -> NoReturn:
        self._refuse(
            call,
            f"The policy allows {cap} critical call(s) per hour and {done} ran in the last hour. "
            "Wait, or ask a person to raise limits.max_critical_calls_per_hour.",
            rule="cap",
        )

    def _refuse(self, call: _Call, reason: str, *, rule: str = "policy") -> NoReturn:
        self._record(call, "deny", None, "refused", error=reason)
        raise ActionDenied(reason, rule=rule)

    def _record(
        self,
        call: _Call,
        decision: str,
        confirmation: str | None,
        outcome: Outcome,
        error: str | None = None,
        by: str | None = None,
    ) -> None:
        self._audit(call.spec.name, call.action, call.shown, call.risk, decision, confirmation, outcome, error, by)

    def _audit(
        self,
        tool: str,
        action: str | None,
        arguments: Mapping[str, Any],
        risk: Risk,
        decision: str,
        confirmation: str | None,
        outcome: Outcome,
        error: str | None = None,
        by: str | None = None,
    ) -> None:
        """Note a row for a call that is not sent; it is written when the call ends."""
        call_log.note(tool=tool, risk=risk.value, decision=decision, outcome=outcome)
        _JOURNAL.get().row(
            tool=tool,
            action=action,
            arguments=arguments,
            risk=risk.value,
            decision=decision,
            confirmation=confirmation,
            connection=self.connection_id,
            outcome=outcome,
            error=error,
            answered_by=by,
        )

    async def _ask(self, call: _Call, decision: Decision, preview: Preview, confirmer: Confirmer) -> CallResult:
        spec, book, connection = call.spec, self.book, self.connection_id
        asked, expires_at = await book.issue(spec.name, call.arguments, connection, channel="elicitation")
        request = ConfirmationRequest(spec.name, call.risk, preview, asked, expires_at, call.arguments, connection)
        try:
            answer = await confirmer.confirm(request)
            if isinstance(answer, Unavailable) and self.policy.on_unconfirmable == "token":
                await book.discard(asked)  # the token id stands in for it, and counts alone under the bound
                answer = await TokenChannel(book).confirm(request)
        except anyio.get_cancelled_exc_class():
            # The client went away or gave up while the person was asked: the attempt still leaves its row.
            with anyio.CancelScope(shield=True), contextlib.suppress(StateUnavailable):
                await book.discard(asked)
            self._record(call, "confirm", "elicitation", "declined", error="cancelled before the person answered")
            raise
        except TooManyPending:
            # The channel's own id or approval was refused by the bound: this id waits for nothing.
            await book.discard(asked)
            raise
        if isinstance(answer, Deferred):
            self._record(call, "confirm", answer.channel, "awaiting_confirmation")
            return CallResult("Waiting for the person's answer.", awaiting=request)
        if isinstance(answer, Accepted):
            try:
                await book.redeem_for(answer.echoed_id or asked, spec.name, call.arguments, connection)
            except ConfirmationInvalid as exc:
                self._record(call, "confirm", answer.how, "refused", error=str(exc), by=answer.by)
                raise
            finally:
                await book.discard(asked)
            return await self._execute(call, decision, answer.how, by=answer.by)
        await book.discard(asked)
        if isinstance(answer, Pending):
            self._record(call, "confirm", answer.channel, "awaiting_confirmation")
            return answer.result
        if isinstance(answer, Declined):
            if answer.echoed_id:
                await book.discard(answer.echoed_id)
            error = f"person chose {answer.action}" + (f": {answer.note}" if answer.note else "")
            self._record(call, "confirm", answer.how, "declined", error=error, by=answer.by)
            raise ConfirmationDeclined(answer.action, answer.note)
        self._refuse(
            call,
            f"{spec.name} needs a person's confirmation and no way to ask one is available here: the client "
            "offers neither elicitation nor MCP Apps, no browser could be opened for the approval page, and no "
            "approval inbox is set up (KARTRA_MCP_APPROVER_TOKEN, over HTTP), so the policy refuses it. Nothing was "
            "sent.",
        )

    async def _confirm_action(self, confirmation_id: str) -> CallResult:
        try:
            pending = await self.book.redeem(confirmation_id, self.connection_id)
        except (ConfirmationInvalid, StateUnavailable) as exc:
            self._audit(
                CONFIRM_TOOL,
                None,
                {"confirmation_id": confirmation_id},
                Risk.CRITICAL,
                "confirm",
                "token",
                "refused",
                str(exc),
            )
            raise
        call, decision = self._confirmed_call(pending.tool, pending.arguments)
        return await self._execute(call, decision, "token")

    def _confirmed_call(self, tool: str, arguments: Mapping[str, Any]) -> tuple[_Call, Decision]:
        """The call a person confirmed, prepared again and checked against today's policy."""
        spec = self.catalog.get(tool) or (self._proxy if tool == PROXY_TOOL else None)
        if spec is None:
            raise ConfirmationInvalid(
                f"The confirmed tool {tool} is no longer in the catalog; nothing was "
                "run. List the tools again and call the one you need."
            )
        call = self._prepare(spec, dict(arguments))
        decision = self.policy.decide(spec.name, call.targets)
        if decision.mode == "deny":
            self._refuse(call, decision.reason)
        return call, decision

    async def _settle(self, approval: Approval) -> CallResult:
        """Run (or record the decline of) a call a person answered after it returned pending.

        It runs outside any tool call (from the approval page or the app-only tool), so it keeps its own journal.
        """
        journal = Journal(self.audit)
        token = _JOURNAL.set(journal)
        try:
            result = await self._settled(approval)
        finally:
            _JOURNAL.reset(token)
            notes = await journal.flush_shielded()
        return replace(result, text="\n\n".join([result.text, *notes])) if notes else result

    async def _settled(self, approval: Approval) -> CallResult:
        via = approval.answered_via or approval.channel
        try:
            if approval.connection != self.connection_id:
                raise ConfirmationInvalid("This approval is for another connection; nothing was run.")
            call, decision = self._confirmed_call(approval.tool, approval.arguments)
            if approval.state != "approved":
                self._record(call, "confirm", via, "declined", error="person chose decline", by=approval.answered_by)
                return CallResult("The person declined; nothing was sent.", {"state": "declined"}, is_error=True)
            return await self._execute(call, decision, via, by=approval.answered_by)
        except ToolCallError as exc:
            return CallResult(str(exc), {"error": type(exc).__name__, "message": str(exc)}, is_error=True)

    # -- sending --------------------------------------------------------------------------------

    async def _admit(self, call: _Call, decision: Decision, how: str, by: str | None) -> int | None:
        """The last checks before sending, and the intent row; raises when the call may not be sent."""
        # A place under the hourly cap is taken, and the intent row written, in one step (see `CriticalCap`).
        # Only capped calls take one, so a slow audit log or shared store never holds up reads.
        cap = self.policy.max_critical_calls_per_hour if call.risk is Risk.CRITICAL else None
        reserving = self.critical_cap.reserve(self.connection_id, cap) if cap is not None else contextlib.nullcontext()
        async with reserving as done:
            if cap is not None and done is not None:
                self._refuse_rate(call, cap, done)
            if call.risk is Risk.READ:
                return None
            # Written before sending, and if it cannot be, nothing is sent.
            return await self.audit.intent(
                tool=call.spec.name,
                action=call.action,
                arguments=call.shown,
                risk=call.risk.value,
                decision=decision.mode,
                confirmation=how if decision.mode == "confirm" else "policy",
                connection=self.connection_id,
                answered_by=by if decision.mode == "confirm" else None,
            )

    async def _execute(self, call: _Call, decision: Decision, how: str, *, by: str | None = None) -> CallResult:
        call_log.note(tool=call.spec.name, risk=call.risk.value, decision=decision.mode)
        hold = await self._hold_refund(call)
        try:
            row = await self._admit(call, decision, how, by)
        except BaseException:
            if hold is not None:  # refused before anything was sent: the refund no longer counts
                with anyio.CancelScope(shield=True):
                    await self.refunds.settle(hold, sent=False)
            raise
        try:
            sent = await call.send()
        except MembraneError as exc:
            status = exc.status_code if isinstance(exc, MembraneApiError) else None
            unknown = exc.may_have_executed and call.risk is not Risk.READ
            if row is not None:
                _JOURNAL.get().finish(row, "unknown" if unknown else "failed", upstream_status=status, error=str(exc))
            return self._membrane_failure(call, exc, unknown)
        if sent.status is not None and sent.status >= 400:
            return self._upstream_failure(call, sent, row)
        failure = kartra_failure(sent.data)
        if failure is not None:
            if row is not None:
                _JOURNAL.get().finish(row, "failed", upstream_status=sent.status, error=str(failure))
            structured = {
                "error": "KartraError",
                "message": failure.message,
                "code": failure.code,
                "command": failure.command,
                "kartra": sent.data,
            }
            return CallResult(describe_failure(failure, commands=len(call.invocations)), structured, is_error=True)
        if row is not None:
            _JOURNAL.get().finish(row, "success", upstream_status=sent.status)
        structured = call.structured(sent)
        if call.spec.output_schema is not None:
            mismatch = argument_problems(call.spec.output_schema, structured)
            if mismatch:
                # Only reads advertise an output schema, so this costs a retry of a read at most.
                logger.warning("%s: output does not match its output schema: %s", call.spec.name, mismatch[0])
                return CallResult(
                    f"The answer does not match the tool's declared output schema ({mismatch[0]}); "
                    f"here it is as received: {render(sent.data)}",
                    is_error=True,
                )
        return CallResult(render(sent.data), structured)

    def _upstream_failure(self, call: _Call, sent: _Sent, row: int | None) -> CallResult:
        """An HTTP error status from Kartra's side of the proxy."""
        status = sent.status or 0
        # Kartra documents 429 as 'not done'; any other error status after a change leaves it unknown.
        unknown = call.risk is not Risk.READ and status != 429
        shown = render(sent.data)[:300]
        if row is not None:
            _JOURNAL.get().finish(row, "unknown" if unknown else "failed", upstream_status=status, error=shown)
        structured = {"error": "UpstreamStatus", "status_code": status, "body": sent.data, "outcome_unknown": unknown}
        if unknown:
            return CallResult(
                self._unknown_text(call, f"Kartra's side answered HTTP {status}"), structured, is_error=True
            )
        if status == 429:
            text = "Kartra is rate limiting (HTTP 429); nothing was done. Wait a second and try again."
        else:
            text = f"Kartra's server answered HTTP {status}: {shown}. Nothing was done; check the method and path."
        return CallResult(text, structured, is_error=True)

    def _unknown_text(self, call: _Call, what: str) -> str:
        check = next((CHECK_WITH[i.cmd] for i in call.invocations if i.cmd in CHECK_WITH), None)
        how = f"check with {check}" if check else "check the account with a read tool"
        return (
            f"OUTCOME UNKNOWN: {what}. The request was sent, so Kartra may or may not have done it. Do not "
            f"call this again until you {how}; then decide, or ask the person."
        )

    def _membrane_failure(self, call: _Call, exc: MembraneError, unknown: bool) -> CallResult:
        structured: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc), "outcome_unknown": unknown}
        if isinstance(exc, MembraneApiError) and exc.data:
            structured["membrane"] = redact(exc.data)
        if unknown:
            return CallResult(self._unknown_text(call, str(exc)), structured, is_error=True)
        advice: str = {
            MembraneBadRequest: "Membrane rejected the request: fix what the message names and call again.",
            MembraneNotAuthenticated: "The Membrane token was refused: a person must renew it "
            "(kartra-mcp doctor says how).",
            MembraneAccessDenied: "This Membrane token may not do this; a person must grant access in Membrane.",
            MembraneNotFound: "The action or connection is gone from Membrane; list the tools again.",
            MembraneRateLimited: "Membrane is rate limiting; wait a few seconds and try again.",
            MembraneAnswerTooLarge: "It was not asked again, since it would be as large: ask for less "
            "(a narrower filter, a smaller page).",
            MembraneAnswerEncoded: "It was not asked again: it would come compressed again. Something between "
            "kartra-mcp and Membrane (a proxy) compresses answers unasked; a person must turn that off.",
        }.get(type(exc), "Try again in a little while.")
        done = " Nothing was done." if call.risk is not Risk.READ else ""
        return CallResult(f"{exc}.{done} {advice}", structured, is_error=True)

    async def _read(self, cmd: str, params: Mapping[str, Any], lead: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run one Kartra read for a preview: through its action when listed, else through the proxy."""
        command = COMMANDS.get(cmd)
        spec = self.catalog.by_action_key(command.action) if command and command.action else None
        who: dict[str, Any] = {}
        if lead.get("lead_id") or lead.get("id"):  # as Kartra does: the id wins over the email
            who["lead_id"] = str(lead.get("lead_id") or lead.get("id"))
        elif lead.get("email"):
            who["email"] = lead["email"]
        data: Any
        if spec is not None and spec.action_id is not None:
            run = await self.client.run_action(
                spec.action_id, connection_id=self.connection_id, input={**params, **who}, retry_safe=True
            )
            data = run.output
        else:
            lead_block = {"email": who["email"]} if "email" in who else {"id": who.get("lead_id", "")}
            form = (
                {"get_lead": lead_block}
                if cmd == "get_lead"
                else {**({"lead": lead_block} if who else {}), "actions": [{"cmd": cmd, **params}]}
            )
            response = await self.client.proxy(
                self.connection_id,
                "POST",
                "/",
                headers={"Content-Type": FORM},
                body=phpform.encode(form).encode(),
                retry_safe=True,
            )
            garbled = garbled_answer(response.status_code, response.body)
            if garbled is not None:
                raise garbled
            data = response.data()
        failure = kartra_failure(data)
        if failure is not None:
            raise failure
        if isinstance(data, dict) and isinstance(data.get("actions"), list):
            for entry in data["actions"]:
                if isinstance(entry, dict) and cmd in entry:
                    return dict(entry[cmd])
        return data if isinstance(data, dict) else {}

    # -- search mode ----------------------------------------------------------------------------

    async def _search(self, query: str, limit: int) -> CallResult:
        found: list[ToolSpec] = []
        try:
            for action in await self.client.search_actions(connection_id=self.connection_id, intent=query, limit=limit):
                spec = next((s for s in self.catalog.specs if s.action_id == action.id), None)
                if spec is not None and spec not in found:
                    found.append(spec)
        except MembraneError as exc:
            logger.warning("Membrane's action search failed (%s); searching locally", exc)
        if not found:
            found = self._local_search(query, limit)
        visible = [s for s in found if self.policy.visible(s.name, s.risk, s.action_key)][:limit]
        items = [
            {
                "name": s.name,
                "title": s.title,
                "description": s.description,
                "risk": s.risk.value,
                "needs_confirmation": self.policy.decide(s.name, [Target(s.action_key, s.risk)]).mode == "confirm",
                "input_schema": s.input_schema,
            }
            for s in visible
        ]
        lines = [
            f"{i['name']} ({i['risk']}{', needs confirmation' if i['needs_confirmation'] else ''}): "
            f"{i['title']}. Input: {json.dumps(i['input_schema'], separators=(',', ':'))}"
            for i in items
        ]
        text = "\n".join(lines) if lines else f"No action matches {query!r}."
        return CallResult(text, {"actions": items})

    def _local_search(self, query: str, limit: int) -> list[ToolSpec]:
        words = {w for w in query.casefold().replace("-", " ").split() if len(w) > 2}
        scored = []
        for spec in self.catalog.specs:
            haystack = f"{spec.name} {spec.title} {spec.description}".casefold()
            score = sum(1 for w in words if w.rstrip("s") in haystack)
            if score:
                scored.append((-score, spec.name, spec))
        return [spec for _, _, spec in sorted(scored)[:limit]]
