"""The `kartra-mcp` command: serve, sandbox, tools, call, doctor, audit, connect.

stdout carries the MCP protocol in `serve --transport stdio`; everything this module says to a
person goes to stderr, and only command results (`tools`, `call`, `audit`, the sandbox's address)
go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kartra_mcp import __version__
from kartra_mcp.errors import ConfigError, KartraMCPError, MembraneError
from kartra_mcp.server import console, doctor
from kartra_mcp.tools.audit import OUTCOMES

# Each command imports what it needs when it runs: `--help`, `--version` and `audit` must not pay
# for the MCP SDK, the sandbox or the HTTP stack (a second of start on a small machine).
if TYPE_CHECKING:
    from kartra_mcp.config import Settings
    from kartra_mcp.membrane import Connection, ConnectionRequest, MembraneClient
    from kartra_mcp.sandbox import Sandbox
    from kartra_mcp.tools.call import Answer, ConfirmationRequest
    from kartra_mcp.tools.policy import Policy

logger = logging.getLogger("kartra_mcp")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    from kartra_mcp.config import Settings

    overrides: dict[str, Any] = {}
    for flag, field in (("policy", "policy"), ("tool_mode", "tool_mode")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "read_only", False):
        overrides["read_only"] = True
    if getattr(args, "auth", None):
        overrides["auth"] = args.auth
    return Settings(**overrides)


def _sandbox_for(args: argparse.Namespace) -> Sandbox | None:
    if not getattr(args, "sandbox", False):
        return None
    from kartra_mcp.sandbox import Sandbox

    _say("kartra-mcp: using the embedded sandbox (a simulated Kartra account; nothing real is touched)")
    return Sandbox()


def _require_credentials(settings: Settings, sandbox: Sandbox | None) -> None:
    """Stop before anything starts when neither credentials nor --sandbox are given (auth says what to set)."""
    from kartra_mcp.membrane import auth_from_settings

    if sandbox is None:
        auth_from_settings(settings)


# -- serve ------------------------------------------------------------------------------------


def _loop_options() -> dict[str, Any]:
    """uvloop when it is installed: the event loop is most of a served call's CPU time on asyncio's own."""
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


async def _serve(args: argparse.Namespace) -> int:
    import anyio
    from mcp.server.stdio import stdio_server

    from kartra_mcp.server.answers import AnswersEndWaits
    from kartra_mcp.server.app import build_server
    from kartra_mcp.server.confirmers import Deployment
    from kartra_mcp.server.http import check_binding, listen, serve_http
    from kartra_mcp.server.pages import serve_on_loopback
    from kartra_mcp.server.runtime import open_runtime
    from kartra_mcp.tools.approval.page import ApprovalPages

    settings = _settings(args)
    if settings.auth == "membrane":
        return await _serve_hosted(args, settings)
    sandbox = _sandbox_for(args)
    _require_credentials(settings, sandbox)
    token = settings.http_token.get_secret_value() if settings.http_token else None
    sock = None
    http = args.transport == "http"
    if http:
        check_binding(args.host, token)
        sock = listen(args.host, args.port)
    approver = settings.approver_token.get_secret_value() if http and settings.approver_token else None
    # Membrane down must not stop the server: it starts from the cache, or says why it has no tools.
    with sock if sock is not None else contextlib.nullcontext():
        async with open_runtime(
            settings, sandbox=sandbox, start_timeout=settings.start_timeout, approver_token=approver
        ) as runtime:
            approvals = runtime.executor.approvals
            assert approvals is not None
            deployment = Deployment(
                approvals=approvals, timeout=settings.approval_timeout, webhook=settings.approval_webhook
            )
            server, notifier = build_server(runtime, deployment=deployment)
            async with anyio.create_task_group() as group:
                group.start_soon(runtime.upkeep.keep_current, notifier.changed)
                if sock is not None:
                    pages = None
                    if approver:
                        base = settings.public_url or f"http://{args.host}:{sock.getsockname()[1]}"
                        approvals.base_url = base.rstrip("/")
                        pages = ApprovalPages(approvals)
                    else:
                        logger.warning(
                            "no KARTRA_MCP_APPROVER_TOKEN: there is no approval inbox, so a call that needs "
                            "confirmation from a client without form elicitation or MCP Apps is refused"
                        )
                    await serve_http(server, sock=sock, host=args.host, token=token, pages=pages)
                else:
                    async with serve_on_loopback(approvals), stdio_server() as (read, write):
                        await server.run(AnswersEndWaits(read), write, server.create_initialization_options())
                group.cancel_scope.cancel()
    return 0


async def _serve_hosted(args: argparse.Namespace, settings: Settings) -> int:
    """Each person signs in with Membrane; their token is used for their calls and nothing else."""
    if args.transport != "http":
        raise ConfigError(
            "--auth membrane is for --transport http: over stdio there is one person, with MEMBRANE_TOKEN."
        )
    if args.sandbox:
        raise ConfigError(
            "--auth membrane signs people in with Membrane, which the embedded sandbox cannot be for a browser. Run "
            "`kartra-mcp sandbox --tenants alice,bob` and set MEMBRANE_API_URL to its address instead."
        )
    from kartra_mcp.server.hosted import serve_hosted
    from kartra_mcp.state import audit_trail, shared_state

    async with (
        audit_trail(settings, settings.audit_db, sandbox=False) as audit,
        shared_state(settings, sandbox=False) as shared,
    ):
        await serve_hosted(settings, host=args.host, port=args.port, audit=audit, shared=shared)
    return 0


# -- sandbox ----------------------------------------------------------------------------------


def _sandbox(args: argparse.Namespace) -> int:
    if args.tenants:
        return _sandbox_tenants(args)
    from kartra_mcp.sandbox import Sandbox, SandboxConfig, parse_rules
    from kartra_mcp.server.http import is_loopback

    faults = []
    if args.faults:
        text = Path(args.faults[1:]).read_text(encoding="utf-8") if args.faults.startswith("@") else args.faults
        faults = parse_rules(text)
    config = SandboxConfig(
        token=args.token,
        seed=args.seed,
        leads=args.leads,
        db=args.db,
        fault_seed=args.seed,
        faults=faults,
        base_url=f"http://{args.host}:{args.port}",
    )
    if not is_loopback(args.host):
        _say(f"kartra-mcp sandbox: listening on {args.host}, beyond this machine; every request needs the token.")
    sandbox = Sandbox(config)

    def announce() -> None:
        counts = sandbox.state()["counts"]
        print(f"Kartra sandbox (Membrane-compatible API) at http://{args.host}:{args.port}", flush=True)
        print(f"token: {sandbox.token}", flush=True)
        print(
            f"account: {counts['leads']} leads, {counts['transactions']} transactions, "
            f"{counts['subscriptions']} subscriptions" + (f"; state in {args.db}" if args.db else ""),
            flush=True,
        )
        print(
            f"use it: MEMBRANE_API_URL=http://{args.host}:{args.port} MEMBRANE_TOKEN=<token> kartra-mcp serve",
            flush=True,
        )

    try:
        _serve_sandbox(sandbox.app, args, announce)
    finally:
        sandbox.close()
    return 0


def _sandbox_tenants(args: argparse.Namespace) -> int:
    """Several tenants, each with its own account, and Membrane's OAuth to sign in to them."""
    from kartra_mcp.sandbox import Tenants

    keys = [k.strip() for k in args.tenants.split(",") if k.strip()]
    base = f"http://{args.host}:{args.port}"
    tenants = Tenants(keys=keys, base_url=base, leads=args.leads)

    def announce() -> None:
        print(f"Membrane sandbox for tenants {', '.join(keys)} at {base}", flush=True)
        for key in keys:
            print(f"token for {key}: {tenants.mint(key)}", flush=True)
        print(
            f"use it: MEMBRANE_API_URL={base} kartra-mcp serve --transport http --auth membrane "
            "(clients sign in at its /oauth/authorize)",
            flush=True,
        )

    try:
        _serve_sandbox(tenants, args, announce)
    finally:
        tenants.close()
    return 0


def _serve_sandbox(app: Any, args: argparse.Namespace, announce: Callable[[], None]) -> None:
    """Serve `app` on --host/--port until stopped, calling `announce` once it listens."""
    import anyio
    import uvicorn

    # A hung request (an injected fault) must not hold a shutdown for long.
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=args.host, port=args.port, log_level="warning", log_config=None, timeout_graceful_shutdown=2
        )
    )

    async def announce_when_listening() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        announce()

    async def run() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(announce_when_listening)
            await server.serve()
            group.cancel_scope.cancel()

    anyio.run(run)


# -- tools and call ---------------------------------------------------------------------------


UNVOUCHED_NOTE = (
    "* critical only because nothing vouches for a lower class (kartra-mcp's table, a Membrane read type); "
    'a person can class their own actions in the policy\'s [risk] table, e.g. "lookup-order" = "read"'
)


async def _tools(args: argparse.Namespace) -> int:
    from kartra_mcp.server.runtime import open_runtime
    from kartra_mcp.tools.policy import Target

    settings = _settings(args)
    sandbox = _sandbox_for(args)
    _require_credentials(settings, sandbox)
    async with open_runtime(settings, sandbox=sandbox) as runtime:
        executor = runtime.executor
        rows: list[dict[str, Any]] = []
        for spec in executor.tools():
            mode = (
                executor.policy.decide(spec.name, [Target(spec.action_key, spec.risk)]).mode
                if spec.kind == "action"
                else {"proxy": "by body", "confirm": "-", "check": "allow", "search": "allow", "run": "by action"}.get(
                    spec.kind, "-"
                )
            )
            rows.append(
                {
                    "name": spec.name,
                    "risk": spec.risk.value,
                    # None: critical only because nothing (built-in table, read type, [risk]) vouches lower
                    "vouched_by": spec.vouched_by if spec.kind == "action" else "built-in tool",
                    "policy": mode,
                    "title": spec.title,
                    "description": executor.describe(spec),
                    "input_schema": spec.input_schema,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        cells = [
            {
                "name": row["name"],
                "risk": row["risk"] + ("*" if row["vouched_by"] is None else ""),
                "policy": row["policy"],
                "title": row["title"] or "",
            }
            for row in rows
        ]
        columns = (("name", "TOOL"), ("risk", "CLASS"), ("policy", "POLICY"), ("title", "TITLE"))
        print("\n".join(console.table(cells, columns)))
        if any(row["vouched_by"] is None for row in rows):
            _say(UNVOUCHED_NOTE)
        connection = runtime.connection
        assert connection is not None  # a runtime opened without a start timeout has resolved it
        _say(f"{len(rows)} tools ({connection.name}, connection {connection.id})")
    return 0


def _ask_on_stderr(prompt: str) -> str:
    """Ask on stderr and read the answer from stdin, so stdout carries only the result."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return sys.stdin.readline()


async def _ask_on_terminal(prompt: str) -> str:
    """As `_ask_on_stderr`, but waiting on the event loop, so Ctrl-C cancels at once instead of after Enter."""
    import anyio

    if os.name != "posix":
        return await anyio.to_thread.run_sync(_ask_on_stderr, prompt, abandon_on_cancel=True)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    await anyio.wait_readable(sys.stdin.fileno())
    return sys.stdin.readline()


class TerminalConfirmer:
    """Asks on the terminal; `--yes` answers for the person; no terminal and no `--yes` refuses."""

    def __init__(self, *, yes: bool, ask: Callable[[str], str] | None = None, interactive: bool | None = None) -> None:
        self._yes = yes
        self._ask = ask
        self._interactive = sys.stdin.isatty() if interactive is None else interactive
        self.refused_for_want_of_terminal = False

    async def confirm(self, request: ConfirmationRequest) -> Answer:
        import anyio

        from kartra_mcp.tools.call import Accepted, Declined, Unavailable

        if self._yes:
            _say(f"{request.preview.text()}\n(--yes given: going ahead)")
            return Accepted("cli --yes")
        if not self._interactive:
            self.refused_for_want_of_terminal = True
            return Unavailable()
        _say(f"\n{request.preview.text()}\n")
        prompt = "Go ahead? y or yes goes ahead; anything else stops here, and nothing is sent. [y/N] "
        if self._ask is None:
            reply = await _ask_on_terminal(prompt)
        else:
            reply = await anyio.to_thread.run_sync(self._ask, prompt, abandon_on_cancel=True)
        if reply.strip().lower() in ("y", "yes"):
            return Accepted("terminal", by="person at the terminal")
        return Declined("decline", how="terminal", by="person at the terminal")


async def _call(args: argparse.Namespace) -> int:
    from kartra_mcp.server.runtime import load_effective_policy, open_runtime

    try:
        arguments = json.loads(args.arguments) if args.arguments else {}
    except ValueError as exc:
        raise ConfigError(
            f'The arguments must be a JSON object, e.g. \'{{"email": "a@example.com"}}\': {exc}'
        ) from None
    if not isinstance(arguments, dict):
        raise ConfigError('The arguments must be a JSON object, e.g. \'{"email": "a@example.com"}\'.')
    settings = _settings(args)
    sandbox = _sandbox_for(args)
    _require_credentials(settings, sandbox)
    # A one-shot command has no later confirm-action: without a terminal or --yes, it refuses.
    policy = replace(load_effective_policy(settings), on_unconfirmable="refuse")
    async with open_runtime(settings, sandbox=sandbox, policy=policy) as runtime:
        confirmer = TerminalConfirmer(yes=args.yes)
        result = await runtime.executor.call(args.tool, arguments, confirmer)
    if result.structured is not None and args.json:
        print(json.dumps(result.structured, indent=2, ensure_ascii=False))
        return 1 if result.is_error else 0
    # The executor's words for these are for a model; the person at the terminal gets their own.
    if confirmer.refused_for_want_of_terminal:
        _say(
            f"kartra-mcp call: {args.tool} needs your confirmation, and there is no terminal to ask you on, so "
            "nothing was sent. Run it in a terminal, or pass --yes to confirm it yourself."
        )
    elif (result.structured or {}).get("error") == "ConfirmationDeclined":
        _say("Stopped: nothing was sent.")
    else:
        print(result.text)
    return 1 if result.is_error else 0


# -- doctor -----------------------------------------------------------------------------------


class _Checks:
    """Each check's result: printed as it comes, or kept for one JSON document at the end."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.failed = 0
        self.as_json = as_json
        self.results: list[dict[str, str]] = []

    def ok(self, what: str, detail: str) -> None:
        self.results.append({"check": what, "status": "pass", "detail": detail})
        if not self.as_json:
            print(f"PASS  {what}: {detail}")

    def fail(self, what: str, detail: str, fix: str) -> None:
        self.failed += 1
        self.results.append({"check": what, "status": "fail", "detail": detail, "fix": fix})
        if not self.as_json:
            print(f"FAIL  {what}: {detail}\n      fix: {fix}")

    def finish(self) -> int:
        if self.as_json:
            print(json.dumps({"passed": not self.failed, "checks": self.results}, indent=2, ensure_ascii=False))
        else:
            print(f"\n{'all checks passed' if not self.failed else f'{self.failed} check(s) failed'}")
        return 1 if self.failed else 0


def _token_check(settings: Settings, checks: _Checks) -> None:
    import jwt

    from kartra_mcp.membrane import WorkspaceCredentials, auth_from_settings

    if settings.membrane_token is None:
        try:
            auth = auth_from_settings(settings)
        except ConfigError as exc:
            checks.fail("token", str(exc), "set the three MEMBRANE_WORKSPACE_*/TENANT_KEY variables")
            return
        assert isinstance(auth, WorkspaceCredentials)
        claims = jwt.decode(auth.token, options={"verify_signature": False})
        checks.ok("token", f"minted for tenant {claims['id']!r} of workspace {claims['iss']!r}, valid 1 hour")
        return
    raw = settings.membrane_token.get_secret_value()
    if raw.startswith("pat-"):
        checks.ok("token", "a personal access token")
        return
    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        checks.ok("token", "an opaque bearer token (Membrane will judge it)")
        return
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time():
        checks.fail(
            "token",
            f"expired at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(expires))}",
            "issue a new MEMBRANE_TOKEN, or use workspace credentials so tokens are minted as needed",
        )
        return
    tenant = claims.get("id") or claims.get("tenantKey") or "?"
    checks.ok(
        "token",
        f"a JWT for tenant {tenant!r}"
        + (f", valid until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(expires))}" if expires else ""),
    )


async def _route_check(client: MembraneClient, connection_id: str, checks: _Checks) -> None:
    """Which of Membrane's routes this deployment answers, asked without running anything."""
    support = await client.route_support(connection_id)
    act = (
        "POST /act answered (runs and raw requests go through it)"
        if support.act
        else "POST /act not served, so runs use the deprecated POST /actions/{id}/run"
    )
    proxy = "the connection proxy answered" if support.proxy else "the connection proxy is not served"
    if support.act or support.proxy:
        checks.ok("routes", f"{act}; {proxy}")
    else:
        checks.fail(
            "routes",
            f"{act}; {proxy}, so kartra-api-request cannot reach Kartra",
            "point MEMBRANE_API_URL at Membrane's API itself, not at a proxy in front of it",
        )


async def _doctor(args: argparse.Namespace) -> int:
    from kartra_mcp.membrane import auth_from_settings
    from kartra_mcp.server.runtime import audit_path, load_effective_policy, membrane_client
    from kartra_mcp.state import shared_problems
    from kartra_mcp.tools.audit import AuditLog, fix_for
    from kartra_mcp.tools.classify import classify
    from kartra_mcp.tools.connection import resolve_connection
    from kartra_mcp.tools.executor import BUILTIN_NAMES
    from kartra_mcp.tools.kartra_ops import ACTIONS

    checks = _Checks(as_json=args.json)
    settings = _settings(args)
    sandbox = _sandbox_for(args)
    if sandbox is not None:
        checks.ok("settings", "the embedded sandbox (--sandbox); Membrane credentials are not used")
    elif settings.has_credentials:
        checks.ok("settings", f"{doctor.token_source(settings)}; Membrane at {settings.membrane_api_url}")
        url_problem = doctor.url_problem(settings.membrane_api_url)
        if url_problem is not None:
            checks.fail("Membrane URL", url_problem, "set MEMBRANE_API_URL to https://api.getmembrane.com or yours")
            return checks.finish()  # nothing is sent to an address that cannot be Membrane's
        _token_check(settings, checks)
    else:
        try:
            auth_from_settings(settings)
        except ConfigError as exc:
            checks.fail("settings", "no usable Membrane credentials", str(exc))
        return checks.finish()
    policy: Policy | None = None
    try:
        policy = load_effective_policy(settings)
        checks.ok(
            "policy",
            f"{policy.source}; read_only={policy.read_only}, kill_switch={policy.kill_switch}, "
            f"on_unconfirmable={policy.on_unconfirmable}",
        )
    except ConfigError as exc:
        checks.fail(
            "policy", str(exc), "fix the policy file (see schemas/policy.schema.json) or unset KARTRA_MCP_POLICY"
        )
    log_path = audit_path(settings, sandbox=sandbox is not None)
    shared = await shared_problems(settings, sandbox=sandbox is not None)
    if "PostgreSQL" in shared:
        problem = shared.pop("PostgreSQL")
        if problem is None:
            checks.ok("audit log", "PostgreSQL (KARTRA_MCP_AUDIT_DSN), writable")
        else:
            checks.fail("audit log", problem, "start PostgreSQL, or correct KARTRA_MCP_AUDIT_DSN")
    else:
        try:
            AuditLog(log_path).close()
            checks.ok("audit log", f"{log_path} (writable)")
        except ConfigError as exc:
            cause = exc.__cause__ or exc
            checks.fail("audit log", f"cannot write {log_path} ({cause})", fix_for(log_path, cause))
    for store, problem in shared.items():
        if problem is None:
            checks.ok("shared state", f"{store} (KARTRA_MCP_REDIS_URL) answers")
        else:
            checks.fail("shared state", problem, "start Redis, or correct KARTRA_MCP_REDIS_URL")
    try:
        async with membrane_client(settings, sandbox=sandbox) as client:
            started = time.perf_counter()
            connections = await client.list_connections()
            checks.ok(
                "Membrane API",
                f"reachable, {len(connections)} connection(s), {(time.perf_counter() - started) * 1000:.0f} ms",
            )
            try:
                connection = await resolve_connection(client, settings.connection_id)
            except ConfigError as exc:
                checks.fail(
                    "Kartra connection",
                    str(exc),
                    doctor.connection_fix(await doctor.kartra_connections(client), settings.connection_id),
                )
                return checks.finish()
            checks.ok("Kartra connection", f"{connection.id} ({connection.name})")
            started = time.perf_counter()
            actions = await client.list_actions(connection_id=connection.id)
            elapsed = (time.perf_counter() - started) * 1000
            if actions:
                checks.ok("actions", f"{len(actions)} Kartra actions listed in {elapsed:.0f} ms")
            else:
                checks.fail("actions", "the connection has no actions", "check the Kartra integration in Membrane")
            await _route_check(client, connection.id, checks)
            if policy is not None:
                unvouched = sorted(
                    a.key or a.id
                    for a in actions
                    if classify(a.key or a.id, a.name, a.type, policy.risk).vouched_by is None
                )
                if unvouched:
                    checks.ok(
                        "classification",
                        f"{len(unvouched)} critical only because nothing vouches for them "
                        f"({', '.join(unvouched)}); {UNVOUCHED_NOTE.split('; ', 1)[1]}",
                    )
                known = {a.key for a in actions} | set(ACTIONS) | set(BUILTIN_NAMES)
                unknown = policy.unknown_actions(known)
                if unknown:
                    checks.fail(
                        "policy actions",
                        f"{', '.join(unknown)} match no tool or action, so those entries do nothing",
                        "fix the spelling in the policy's [actions] table",
                    )
    except MembraneError as exc:
        checks.fail(
            "Membrane API", str(exc), "check MEMBRANE_API_URL and the token (a 401 means the token is wrong or expired)"
        )
    return checks.finish()


# -- audit and connect ------------------------------------------------------------------------

_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")


def parse_since(text: str, *, now: float | None = None) -> float:
    """`24h`, `30m`, `7d`, `2w`, or an ISO date or time (UTC), as epoch seconds."""
    now = time.time() if now is None else now
    match = _SPAN.match(text.strip().lower())
    if match:
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now - int(match.group(1)) * seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give a span like 24h, 30m, 7d, or an ISO date such as 2026-11-01"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _audit(args: argparse.Namespace) -> int:
    from kartra_mcp.state import reading_audit
    from kartra_mcp.tools.audit import sandbox_audit_path

    settings = _settings(args)
    # What server.runtime.audit_path says, without loading the runtime and its HTTP client.
    path = sandbox_audit_path(settings.audit_db) if args.sandbox else settings.audit_db
    log = reading_audit(settings, path, sandbox=args.sandbox)
    where = "PostgreSQL (KARTRA_MCP_AUDIT_DSN)" if settings.audit_dsn is not None else str(path)
    if log is None:
        _say(f"No audit log yet at {path}.")
        return 0
    try:
        rows = log.rows(
            since=parse_since(args.since) if args.since else None,
            tool=args.tool,
            outcome=args.outcome,
            tenant=args.tenant,
            limit=args.limit,
        )
    finally:
        log.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False))
        return 0
    cells = [
        {
            "time": row.as_dict()["time"],
            "id": str(row.id),
            "tool": row.tool,
            "risk": row.risk,
            "outcome": row.outcome,
            "confirmation": row.confirmation or "-",
            "arguments": console.clip(json.dumps(row.arguments, ensure_ascii=False), 60)
            + (f"  ! {console.clip(row.error, 80)}" if row.error else ""),
        }
        for row in reversed(rows)
    ]
    columns = (
        ("time", "TIME (UTC)"),
        ("id", "ID"),
        ("tool", "TOOL"),
        ("risk", "CLASS"),
        ("outcome", "OUTCOME"),
        ("confirmation", "CONFIRMED BY"),
        ("arguments", "ARGUMENTS  ! ERROR"),
    )
    print("\n".join(console.table(cells, columns)))
    clipped = any(len(json.dumps(r.arguments, ensure_ascii=False)) > 60 or len(r.error or "") > 80 for r in rows)
    _say(f"{len(rows)} row(s) from {where}" + ("; --json shows whole arguments and errors" if clipped else ""))
    return 0


async def _connect(args: argparse.Namespace) -> int:
    import anyio
    import uvicorn

    from kartra_mcp.sandbox import Sandbox, SandboxConfig
    from kartra_mcp.server.http import listen
    from kartra_mcp.server.runtime import membrane_client

    settings = _settings(args)
    if not args.sandbox:
        _require_credentials(settings, None)
        return _connected(await _wait_for_connection(membrane_client(settings), args.timeout), args.timeout)
    # The embedded sandbox, with no Kartra connection yet, serves its connect page on this machine
    # while the command waits, so the link printed is one a browser can open.
    _say("kartra-mcp: using the embedded sandbox (a simulated Kartra account; nothing real is touched)")
    failure: list[KartraMCPError] = []
    connection: Connection | None = None
    with listen("127.0.0.1", 0) as sock:
        sandbox = Sandbox(SandboxConfig(connections=0, base_url=f"http://127.0.0.1:{sock.getsockname()[1]}"))
        page = uvicorn.Server(uvicorn.Config(sandbox.app, log_level="warning", log_config=None, lifespan="off"))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(page.serve, [sock])
                try:
                    connection = await _wait_for_connection(membrane_client(settings, sandbox=sandbox), args.timeout)
                except KartraMCPError as exc:
                    failure.append(exc)  # raised below, so it is not wrapped in the task group's exception group
                finally:
                    page.should_exit = True
        finally:
            sandbox.close()
    if failure:
        raise failure[0]
    return _connected(connection, args.timeout)


async def _wait_for_connection(client: MembraneClient, timeout: float) -> Connection | None:
    """Show the link and count down while the person connects; None when they do not in time."""
    import anyio

    from kartra_mcp.tools.connection import connect_kartra

    countdown = console.Countdown(sys.stderr)
    connection: Connection | None = None
    failure: KartraMCPError | None = None

    async def tick(deadline: float) -> None:
        while True:
            countdown.show(deadline - time.monotonic())
            await anyio.sleep(1)

    async with client, anyio.create_task_group() as group:

        def show(request: ConnectionRequest) -> None:
            _say(
                f"Open this link in a browser to connect Kartra:\n\n  {request.url}\n\n"
                f"Waiting up to {console.clock(timeout)} for you to finish there (Ctrl-C to stop)."
            )
            group.start_soon(tick, time.monotonic() + timeout)

        try:
            with anyio.move_on_after(timeout):
                # connect_kartra's own limit is later, so the countdown's is the one a person meets.
                connection = await connect_kartra(client, show_url=show, timeout=timeout + 60)
        except KartraMCPError as exc:
            failure = exc  # raised below, so it reaches the person as itself, not in an exception group
        group.cancel_scope.cancel()
    countdown.end()
    if failure is not None:
        raise failure
    return connection


def _connected(connection: Connection | None, timeout: float) -> int:
    if connection is None:
        _say(
            f"kartra-mcp connect: Kartra was not connected within {console.clock(timeout)}, and nothing more is "
            "waited for. Run `kartra-mcp connect` again when you are ready (--timeout SECONDS waits longer); if "
            "you did finish in the browser, `kartra-mcp doctor` shows the connection."
        )
        return 1
    print(
        f"Connected: {connection.id} ({connection.name}). kartra-mcp will use it; if you have several, set "
        f"KARTRA_MCP_CONNECTION_ID={connection.id}"
    )
    return 0


# -- the parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    # On the top level and on each command, so `kartra-mcp -v doctor` and `kartra-mcp doctor -v` both work;
    # SUPPRESS keeps a command's absent flag from undoing the top level's.
    logging_options = argparse.ArgumentParser(add_help=False)
    logging_options.add_argument(
        "--log-level",
        type=str.upper,
        choices=console.LEVELS,
        default=argparse.SUPPRESS,
        help="how much to log on stderr (default INFO while serving, WARNING otherwise; KARTRA_MCP_LOG_LEVEL)",
    )
    logging_options.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more: -v one step, -vv two"
    )
    parser = argparse.ArgumentParser(
        prog="kartra-mcp",
        description="Kartra for AI assistants, through Membrane, with guardrails a person controls.",
        parents=[logging_options],
    )
    parser.add_argument("--version", action="version", version=f"kartra-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description or summary[0].upper() + summary[1:] + ".", 88),
            epilog=console.environment_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[logging_options],
        )

    def common(sub: argparse.ArgumentParser, *, sandbox: bool = True) -> None:
        if sandbox:
            sub.add_argument("--sandbox", action="store_true", help="use the embedded sandbox account")
        sub.add_argument("--policy", type=Path, help="policy file (TOML); default KARTRA_MCP_POLICY")
        sub.add_argument("--read-only", action="store_true", help="only reads are listed and run")
        sub.add_argument(
            "--tool-mode",
            choices=["actions", "search"],
            help="one tool per action (default), or search-actions + run-action",
        )

    serve = command("serve", "run the MCP server (stdio by default)")
    common(serve)
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    serve.add_argument(
        "--auth",
        choices=["token", "membrane"],
        help="HTTP: one shared KARTRA_MCP_HTTP_TOKEN (default), or each person signs in with Membrane",
    )

    sandbox = command("sandbox", "run the sandbox: a Membrane-compatible API over a Kartra account")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8700, help="port to listen on (default 8700)")
    sandbox.add_argument("--token", help="the bearer token to accept (default: a tenant JWT, printed at start)")
    sandbox.add_argument("--seed", type=int, default=7, help="seed of the generated account (default 7)")
    sandbox.add_argument("--leads", type=int, default=120, help="how many leads to generate (default 120)")
    sandbox.add_argument("--db", type=Path, help="keep the account in this SQLite file across restarts")
    sandbox.add_argument("--faults", help="fault rules as JSON, or @FILE")
    sandbox.add_argument("--tenants", help="several tenants (comma-separated keys), each its own account, with OAuth")

    tools = command("tools", "list the tools with their risk and policy")
    common(tools)
    tools.add_argument("--json", action="store_true", help="every field, with whole descriptions and schemas")

    call = command("call", "call one tool from the terminal")
    common(call)
    call.add_argument("tool")
    call.add_argument("arguments", nargs="?", default="{}", help="the arguments as a JSON object")
    call.add_argument("--yes", action="store_true", help="confirm without asking (you are the person confirming)")
    call.add_argument("--json", action="store_true", help="print the structured result")

    doctor = command("doctor", "check settings, token, connection and actions")
    common(doctor)
    doctor.add_argument("--json", action="store_true", help="the checks as JSON")

    audit = command("audit", "read the audit log")
    audit.add_argument("--sandbox", action="store_true", help="read the embedded sandbox's own log")
    audit.add_argument("--since", help="e.g. 24h, 30m, 7d, or an ISO date")
    audit.add_argument("--tool")
    audit.add_argument("--outcome", choices=OUTCOMES)
    audit.add_argument("--tenant", help="hosted: only this Membrane tenant's rows")
    audit.add_argument("--limit", type=int, default=200, help="at most this many rows, newest first (default 200)")
    audit.add_argument("--json", action="store_true", help="every field, with whole arguments and errors")

    connect = command(
        "connect",
        "connect Kartra to your Membrane tenant (prints a link)",
        "Connect Kartra to your Membrane tenant: prints a link to open in a browser, where you sign in to "
        "Kartra, and waits until you have finished there (or --timeout passes). Then prints the new "
        "connection's id.",
    )
    connect.add_argument(
        "--sandbox",
        action="store_true",
        help="connect the embedded sandbox (its link is served on this machine while it waits)",
    )
    connect.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for you to finish (default 600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pydantic import ValidationError

    from kartra_mcp.config import Settings

    try:
        configured = Settings()
        chosen = configured.log_level if "log_level" in configured.model_fields_set else None
    except ValidationError:
        chosen = None  # the same settings are read again below, where their errors are reported
    console.setup_logging(
        console.log_level(
            args.command, flag=getattr(args, "log_level", None), verbose=getattr(args, "verbose", 0), configured=chosen
        )
    )
    try:
        if args.command == "sandbox":
            return _sandbox(args)
        if args.command == "audit":
            return _audit(args)
        runner = {"serve": _serve, "tools": _tools, "call": _call, "doctor": _doctor, "connect": _connect}
        import anyio

        options = _loop_options() if args.command == "serve" else {}
        return anyio.run(runner[args.command], args, backend_options=options)
    except ConfigError as exc:
        _say(f"kartra-mcp: {exc}")
        return 2
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        _say(f"kartra-mcp: invalid setting: {problems}")
        return 2
    except KartraMCPError as exc:
        _say(f"kartra-mcp: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader stopped early (`kartra-mcp tools | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
