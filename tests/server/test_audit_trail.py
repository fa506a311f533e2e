"""The audit log through the SDK's client: every attempt at a change leaves a row, a log that
cannot be written never hides a sent write's outcome, and nothing waits on it but the call that
needs it."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import CallToolResult, PromptReference
from pydantic import SecretStr

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import FaultRule, Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.sandbox.faults import ROUTE_ALIAS
from kartra_mcp.server.cli import main
from kartra_mcp.server.runtime import open_runtime
from kartra_mcp.tools.audit import AuditLog, AuditTrail, sandbox_audit_path
from kartra_mcp.tools.limits import MAX_ARGUMENT_BYTES, MAX_DEPTH
from kartra_mcp.tools.policy import Policy
from tests.conftest import FAST_RETRY
from tests.processes import local_env, read_only, run, write_lock_held
from tests.routes import ROUTES, ran, raw_rule
from tests.server.conftest import Person, connect, text_of

MEMBRANE = "http://membrane.kartra-mcp.invalid"
PROXY = "kartra-api-request"


@pytest.fixture
def log_path(settings: Settings) -> Path:
    """Where the runtime over the embedded sandbox keeps its log."""
    return sandbox_audit_path(settings.audit_db)


def _rows(runtime_log: AuditTrail, tool: str | None = None) -> list[tuple[str, str]]:
    return [(r.tool, r.outcome) for r in reversed(runtime_log.rows(tool=tool))]


def _tag(samples: dict[str, Any]) -> dict[str, Any]:
    return {"email": samples["lead"]["email"], "tag_name": "VIP"}


# -- a locked log: nothing else waits, nothing is sent without its row, no outcome is lost ----------------


async def test_a_read_on_another_session_completes_while_a_write_waits_for_a_log_another_process_holds(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], log_path: Path
) -> None:
    """Reading the log itself (its resource, email completion) waits too, but off the event loop."""
    finished: list[str] = []
    async with (
        open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as writer,
        connect(runtime, mode) as watcher,
        connect(runtime, mode) as reader,
    ):

        async def write() -> None:
            result = await writer.call_tool("assign-tag", _tag(samples))
            finished.append("write" if not result.is_error else f"write failed: {text_of(result)}")

        async def watch() -> None:
            await watcher.read_resource("kartra-mcp://audit/recent")
            await watcher.complete(PromptReference(name="find-customer"), {"name": "email", "value": "h"}, None)
            finished.append("watch")

        async with anyio.create_task_group() as tasks:
            with write_lock_held(log_path):
                tasks.start_soon(write)
                # The write's intent row waits for the other process's lock before the log is read.
                await anyio.wait_all_tasks_blocked()
                await anyio.sleep(0.2)
                tasks.start_soon(watch)
                await anyio.wait_all_tasks_blocked()
                read = await reader.call_tool("get-lead", {"email": samples["lead"]["email"]})
                assert not read.is_error, text_of(read)
                finished.append("read")
                # The write cannot have finished: its intent row waits for the other process's lock.
                assert finished == ["read"]
        # Once the lock is gone, the write and the log's reader finish in either order.
        assert finished[0] == "read" and sorted(finished[1:]) == ["watch", "write"], finished
        assert _rows(runtime.audit) == [("assign-tag", "success")]


class _Away(Person):
    """A person who is asked and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.being_asked = anyio.Event()

    async def __call__(self, context: Any, params: Any) -> Any:
        self.being_asked.set()
        await anyio.sleep_forever()


async def test_a_call_cancelled_while_the_person_is_asked_leaves_a_row_and_sends_nothing(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    person = _Away()
    transaction = samples["refundable_transaction"]["transaction_id"]
    async with open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime:
        async with connect(runtime, mode, person) as client, anyio.create_task_group() as tasks:
            tasks.start_soon(client.call_tool, "refund-transaction", {"transaction_id": transaction})
            await person.being_asked.wait()
            tasks.cancel_scope.cancel()  # the client gives up, as when it disconnects
        with anyio.fail_after(10):
            while not runtime.audit.rows(tool="refund-transaction"):
                await anyio.sleep(0.02)
        rows = _rows(runtime.audit, "refund-transaction")
    assert rows[-1][1] in ("declined", "awaiting_confirmation"), rows
    assert not ran(sandbox.requests, BY_KEY["refund-transaction"].id)


async def test_a_write_whose_intent_row_cannot_be_written_is_not_sent(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any], log_path: Path
) -> None:
    audit = AuditLog(log_path, busy_timeout=0.05)
    try:
        async with (
            open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY, audit=audit) as runtime,
            connect(runtime, mode) as client,
        ):
            sandbox.requests.clear()
            with write_lock_held(log_path):
                result = await client.call_tool("assign-tag", _tag(samples))
    finally:
        audit.close()
    assert result.is_error
    text = text_of(result)
    assert "nothing was sent" in text and str(log_path) in text and "KARTRA_MCP_AUDIT_DB" in text
    assert not ran(sandbox.requests, BY_KEY["assign-tag"].id)


class _LockAfter:
    """Membrane in front of the sandbox: once a request to `marker` has been carried out, another
    process takes the audit log's write lock, and only then does the answer go back."""

    def __init__(self, sandbox: Sandbox, marker: str, log: Path, stack: ExitStack) -> None:
        self.sandbox, self.marker, self.log, self.stack = sandbox, marker, log, stack

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.sandbox(scope, receive, send)
        # On /act the path names no action; the sandbox notes which one the body ran.
        if scope["type"] == "http" and self.marker in f"{scope['path']} {scope.get(ROUTE_ALIAS, '')}":
            await anyio.to_thread.run_sync(self.stack.enter_context, write_lock_held(self.log))


async def test_a_sent_write_reports_its_outcome_when_the_log_cannot_record_it(
    mode: str,
    settings: Settings,
    sandbox: Sandbox,
    samples: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = settings.model_copy(update={"membrane_token": SecretStr(sandbox.token), "membrane_api_url": MEMBRANE})
    audit = AuditLog(settings.audit_db, busy_timeout=0.05)
    with ExitStack() as stack:
        app = _LockAfter(sandbox, BY_KEY["assign-tag"].id, settings.audit_db, stack)
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            async with (
                open_runtime(remote, transport=transport, retry=FAST_RETRY, audit=audit) as runtime,
                connect(runtime, mode) as client,
            ):
                with caplog.at_level(logging.ERROR, logger="kartra_mcp.tools.audit"):
                    result = await client.call_tool("assign-tag", _tag(samples))
        finally:
            audit.close()
    assert not result.is_error
    text = text_of(result)
    assert "The audit log could not record this" in text and "still says 'unknown'" in text
    assert result.structured_content is not None and result.structured_content["audit_log_error"]
    assert any("could not record the outcome" in r.getMessage() for r in caplog.records)
    assert _rows(AuditLog(settings.audit_db)) == [("assign-tag", "unknown")]


# -- a log that cannot be written stops the start ---------------------------------------------------------


def test_doctor_and_serve_refuse_a_read_only_audit_log_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "audit.sqlite3"
    log = sandbox_audit_path(real)
    AuditLog(log).close()
    env = {"KARTRA_MCP_AUDIT_DB": str(real), "KARTRA_MCP_CACHE_DIR": str(tmp_path / "cache")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with read_only(log):
        assert main(["doctor", "--sandbox"]) == 1
        out = capsys.readouterr().out
        served = run([sys.executable, "-m", "kartra_mcp", "serve", "--sandbox"], env={**local_env(), **env}, timeout=60)
    assert f"FAIL  audit log: cannot write {log}" in out and "fix: it is not writable" in out
    assert served.returncode == 2, served.explain()
    assert str(log) in served.stderr and "KARTRA_MCP_AUDIT_DB" in served.stderr and "Traceback" not in served.stderr


# -- every attempt at a change leaves a row ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        pytest.param("refund-transaction", {}, "transaction_id", id="missing-argument-of-a-critical-tool"),
        pytest.param("assign-tag", {"email": 7, "tag_name": "VIP"}, "email", id="invalid-argument-of-a-write"),
        pytest.param(PROXY, {"method": "FETCH"}, "method", id="invalid-argument-of-the-proxy"),
        pytest.param(
            PROXY,
            {"headers": {"Content-Type": "application/json"}, "body": "[" * 5000 + "]" * 5000},
            f"deeper than {MAX_DEPTH}",
            id="deeply-nested-proxy-body",
        ),
        pytest.param(
            "refund-transaction",
            {"transaction_id": "7" * (1024 * 1024)},
            f"bound of {MAX_ARGUMENT_BYTES}",
            id="an-argument-of-a-mebibyte",
        ),
    ],
)
async def test_a_refused_attempt_at_a_change_leaves_a_row(
    tool: str, arguments: dict[str, Any], expected: str, mode: str, settings: Settings, sandbox: Sandbox
) -> None:
    async with (
        open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode, Person("decline")) as client,
    ):
        result = await client.call_tool(tool, arguments)
        rows = runtime.audit.rows()
    assert result.is_error and expected in text_of(result), text_of(result)
    assert [(r.tool, r.outcome) for r in rows] == [(tool, "refused")]
    assert len(json.dumps(rows[0].arguments)) < 20_000


async def test_run_action_refuses_a_deeply_nested_input_string_and_leaves_a_row(
    mode: str, settings: Settings, sandbox: Sandbox
) -> None:
    search = settings.model_copy(update={"tool_mode": "search"})
    async with (
        open_runtime(search, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        result = await client.call_tool("run-action", {"action": "assign-tag", "input": "[" * 5000 + "]" * 5000})
        rows = runtime.audit.rows()
    assert result.is_error and f"deeper than {MAX_DEPTH}" in text_of(result)
    assert [(r.tool, r.outcome) for r in rows] == [("assign-tag", "refused")]


async def test_the_proxy_row_holds_the_request_as_sent(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    email = samples["lead"]["email"]
    async with (
        open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        # Given as a form string with no method: the row holds the method, header and decoded fields sent.
        body = f"lead[email]={email}&actions[0][cmd]=assign_tag&actions[0][tag_name]=VIP"
        result = await client.call_tool(PROXY, {"body": body})
        rows = runtime.audit.rows(tool=PROXY)
    assert not result.is_error, text_of(result)
    assert rows[0].arguments == {
        "method": "POST",
        "path": "/",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        "body": {"lead": {"email": email}, "actions": {"0": {"cmd": "assign_tag", "tag_name": "VIP"}}},
    }


# -- a garbled answer through the proxy ---------------------------------------------------------------------


def _proxy_runs(sandbox: Sandbox) -> int:
    return sum(
        1 for r in sandbox.requests if r["method"] == "POST" and ("/proxy" in r["path"] or r.get("runs") == "/act/api")
    )


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("times", "sends"),
    [pytest.param(1, 2, id="once-then-sound"), pytest.param(None, FAST_RETRY.attempts, id="every-time")],
)
async def test_a_garbled_answer_to_a_proxied_read_is_asked_again_then_said(
    route: str, times: int | None, sends: int, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    async with (
        open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        sandbox.requests.clear()
        sandbox.faults.rules = [FaultRule(route=raw_rule(route), malformed=True, times=times)]
        result = await client.call_tool(PROXY, {"body": {"get_lead": {"email": samples["lead"]["email"]}}})
    assert _proxy_runs(sandbox) == sends
    if times is not None:
        assert not result.is_error and samples["lead"]["email"] in text_of(result), text_of(result)
    else:
        assert result.is_error and "not JSON" in text_of(result)
        if route == "legacy":  # Kartra's own garbled answer, shown; on /act it is Membrane's answer that broke
            assert '{\\"output\\": {\\"status\\": \\"Succ' in text_of(result)


@pytest.mark.parametrize("route", ROUTES)
async def test_a_garbled_answer_to_a_proxied_write_is_an_unknown_outcome_never_sent_again(
    route: str, mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    body = {"lead": {"email": samples["lead"]["email"]}, "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}]}
    async with (
        open_runtime(settings, sandbox=sandbox, retry=FAST_RETRY) as runtime,
        connect(runtime, mode) as client,
    ):
        sandbox.requests.clear()
        sandbox.faults.rules = [FaultRule(route=raw_rule(route), malformed=True)]
        result: CallToolResult = await client.call_tool(PROXY, {"body": body})
        rows = runtime.audit.rows(tool=PROXY)
    assert result.is_error and text_of(result).startswith("OUTCOME UNKNOWN") and "not JSON" in text_of(result)
    assert [r.outcome for r in rows] == ["unknown"]
    assert _proxy_runs(sandbox) == 1


# -- the sandbox is play ------------------------------------------------------------------------------------


def test_play_on_the_embedded_sandbox_writes_its_own_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "audit.sqlite3"
    monkeypatch.setenv("KARTRA_MCP_AUDIT_DB", str(real))
    monkeypatch.setenv("KARTRA_MCP_CACHE_DIR", str(tmp_path / "cache"))
    tag = {"email": "henry.jones.1@example.com", "tag_name": "VIP"}
    assert main(["call", "--sandbox", "--yes", "assign-tag", json.dumps(tag)]) == 0
    assert not real.exists()
    assert _rows(AuditLog(sandbox_audit_path(real))) == [("assign-tag", "success")]


async def test_the_hourly_cap_counts_only_this_connection_s_calls(
    mode: str, settings: Settings, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    policy = Policy(max_critical_calls_per_hour=1)
    async with (
        open_runtime(settings, sandbox=sandbox, policy=policy, retry=FAST_RETRY) as runtime,
        connect(runtime, mode, Person("accept")) as client,
    ):
        await runtime.audit.intent(
            tool="refund-transaction",
            action="refund-transaction",
            arguments={},
            risk="critical",
            decision="confirm",
            confirmation="elicitation",
            connection="another-connection",
            outcome="success",
        )
        result = await client.call_tool(
            "refund-transaction", {"transaction_id": samples["refundable_transaction"]["transaction_id"]}
        )
    assert not result.is_error, text_of(result)


async def test_a_refund_refused_because_its_row_cannot_be_written_no_longer_counts_toward_the_limit(
    settings: Settings, sandbox: Sandbox, samples: dict[str, Any], log_path: Path
) -> None:
    """Its hold on the transaction's refund limit is released: nothing was sent, so nothing was refunded."""
    tx = samples["refundable_transaction"]
    part, limit = round(tx["amount"] * 0.45, 2), round(tx["amount"] * 0.75, 2)
    refund = {"transaction_id": tx["transaction_id"], "refund_amount": part}
    audit = AuditLog(log_path, busy_timeout=0.05)
    try:
        async with (
            open_runtime(
                settings, sandbox=sandbox, policy=Policy(max_refund_amount=limit), retry=FAST_RETRY, audit=audit
            ) as runtime,
            connect(runtime, "legacy", Person("accept")) as client,
        ):
            with write_lock_held(log_path):
                refused = await client.call_tool("refund-transaction", refund)
            again = await client.call_tool("refund-transaction", refund)
    finally:
        audit.close()
    assert refused.is_error and "nothing was sent" in text_of(refused)
    assert not again.is_error, text_of(again)
    assert sandbox.account.refunded_amount(int(tx["transaction_id"])) == part
