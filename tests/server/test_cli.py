"""The `kartra-mcp` command, run in-process on the embedded sandbox."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import httpx2
import pytest

from kartra_mcp.server.cli import TerminalConfirmer, main, parse_since
from kartra_mcp.server.runtime import Runtime
from kartra_mcp.tools.audit import AuditLog, sandbox_audit_path
from tests.processes import end, local_env, standalone_sandbox, wait_until
from tests.services import RedisServer

REFUNDABLE = {"transaction_id": "700001"}  # the default seed's first refundable sale


@pytest.fixture
def audit_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.sqlite3"
    monkeypatch.setenv("KARTRA_MCP_AUDIT_DB", str(path))
    monkeypatch.setenv("KARTRA_MCP_CACHE_DIR", str(tmp_path / "cache"))
    return path


def _rows(path: Path) -> list[Any]:
    log = AuditLog(path)
    try:
        return list(reversed(log.rows()))
    finally:
        log.close()


def test_tools_lists_every_tool_with_its_risk_and_policy(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--sandbox", "--json"]) == 0
    tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert (tools["get-lead"]["risk"], tools["get-lead"]["policy"]) == ("read", "allow")
    assert (tools["refund-transaction"]["risk"], tools["refund-transaction"]["policy"]) == ("critical", "confirm")
    assert tools["kartra-api-request"]["policy"] == "by body"


def test_read_only_lists_only_reads(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--sandbox", "--json", "--read-only"]) == 0
    risks = {t["risk"] for t in json.loads(capsys.readouterr().out) if t["name"] != "kartra-api-request"}
    assert risks == {"read"}


def test_call_runs_a_read_and_prints_its_result(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--sandbox", "--json", "retrieve-account-lists", "{}"]) == 0
    assert "Newsletter" in json.loads(capsys.readouterr().out)["account_lists"]


def test_call_without_a_terminal_refuses_what_needs_confirmation(
    audit_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "--sandbox", "refund-transaction", json.dumps(REFUNDABLE)]) == 1
    captured = capsys.readouterr()
    assert "--yes" in captured.err
    assert [(r.tool, r.outcome) for r in _rows(sandbox_audit_path(audit_db))] == [("refund-transaction", "refused")]


def test_call_with_yes_confirms_on_the_persons_behalf_and_says_so(
    audit_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "--sandbox", "--yes", "refund-transaction", json.dumps(REFUNDABLE)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["transaction_refunded"] == REFUNDABLE["transaction_id"]
    assert "Refund 67.00 USD" in captured.err
    assert [(r.outcome, r.confirmation) for r in _rows(sandbox_audit_path(audit_db))] == [("success", "cli --yes")]


@pytest.mark.parametrize(("reply", "done"), [("yes", True), ("YES ", True), ("y", False), ("no", False)])
async def test_the_terminal_asks_and_only_a_plain_yes_goes_ahead(runtime: Runtime, reply: str, done: bool) -> None:
    shown: list[str] = []

    def ask(prompt: str) -> str:
        shown.append(prompt)
        return reply

    confirmer = TerminalConfirmer(yes=False, ask=ask, interactive=True)
    result = await runtime.executor.call("refund-transaction", REFUNDABLE, confirmer)
    assert result.is_error is not done
    assert len(shown) == 1
    assert (runtime.sandbox is not None) and (runtime.sandbox.account.refunded_amount(700001) > 0) is done
    # Yes or no, the audit log names the terminal as where the person answered.
    row = runtime.audit.rows(tool="refund-transaction")[0]
    assert (row.outcome, row.confirmation) == ("success" if done else "declined", "terminal")


def test_ctrl_c_at_the_confirmation_prompt_cancels_at_once(tmp_path: Path) -> None:
    """In a real terminal: Ctrl-C stops `kartra-mcp call` without waiting for Enter, and nothing is sent."""
    primary, secondary = pty.openpty()
    env = local_env(None, KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"), KARTRA_MCP_LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, "-m", "kartra_mcp", "call", "--sandbox", "refund-transaction", json.dumps(REFUNDABLE)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(secondary)
    seen: list[bytes] = []
    try:
        wait_until(lambda: _prompted(primary, seen), timeout=60, what=f"the prompt; the terminal shows {seen}")
        os.write(primary, b"\x03")  # Ctrl-C, typed at the terminal: the line discipline sends SIGINT
        returncode = process.wait(timeout=20)
    finally:
        end(process)
        os.close(primary)
    assert returncode == 130
    rows = AuditLog(sandbox_audit_path(tmp_path / "audit.sqlite3")).rows()
    assert [r.outcome for r in rows if r.outcome == "success"] == []


def _prompted(fd: int, seen: list[bytes]) -> bool:
    seen.append(_read(fd))
    return b"Type 'yes'" in b"".join(seen)


def _read(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 0.1)
    if not ready:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


def test_call_with_arguments_that_are_not_json_says_how_to_write_them(
    audit_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "--sandbox", "get-lead", "email=a@example.com"]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_doctor_passes_every_check_on_the_sandbox(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    for check in ("settings", "policy", "audit log", "Membrane API", "Kartra connection", "actions", "routes"):
        assert f"PASS  {check}:" in out
    assert "POST /act answered" in out and "the connection proxy answered" in out


def test_doctor_reports_the_routes_a_deployment_lacks_and_runs_nothing(
    audit_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        (["POST /act"], 0, ["PASS  routes: POST /act not served", "proxy answered"]),
        (["POST /act", "GET /connections/*/proxy*"], 1, ["FAIL  routes: POST /act not served", "not served", "fix:"]),
    ]
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        monkeypatch.setenv("MEMBRANE_API_URL", sandbox.url)
        monkeypatch.setenv("MEMBRANE_TOKEN", sandbox.token)
        for missing, code, said in cases:
            # Answered as a missing route is: Membrane's 404.
            sandbox.set_faults([{"route": route, "status": 404} for route in missing])
            assert main(["doctor"]) == code
            out = capsys.readouterr().out
            for text in said:
                assert text in out, out
        assert sandbox.state()["counts"]["action_runs"] == 0


def test_doctor_without_credentials_fails_with_a_fix(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  settings" in out and "fix:" in out and "--sandbox" in out


def test_doctor_reports_an_expired_token(
    audit_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import jwt

    expired = jwt.encode({"id": "t", "exp": 1_000_000}, "a-secret-long-enough-for-hs256-signing!", "HS256")
    monkeypatch.setenv("MEMBRANE_TOKEN", expired)
    monkeypatch.setenv("MEMBRANE_API_URL", "http://127.0.0.1:9")  # nothing listens there
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  token: expired" in out
    assert "FAIL  Membrane API" in out


def test_an_invalid_policy_stops_the_server_at_start_and_says_why(
    audit_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[classes]\ncritical = "sometimes"\n')
    assert main(["serve", "--sandbox", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert str(policy) in err and "classes.critical" in err and '"confirm"' in err


def test_audit_reads_and_filters_the_log(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["call", "--sandbox", "refund-transaction", json.dumps(REFUNDABLE)])
    main(
        [
            "call",
            "--sandbox",
            "--yes",
            "assign-tag",
            json.dumps({"email": "henry.jones.1@example.com", "tag_name": "VIP"}),
        ]
    )
    capsys.readouterr()
    assert main(["audit", "--sandbox", "--since", "1h", "--json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert [row["tool"] for row in everything] == ["assign-tag", "refund-transaction"]
    assert main(["audit", "--sandbox", "--outcome", "refused", "--json"]) == 0
    assert [row["tool"] for row in json.loads(capsys.readouterr().out)] == ["refund-transaction"]
    assert main(["audit", "--sandbox", "--tool", "assign-tag"]) == 0
    assert "assign-tag" in capsys.readouterr().out


def test_audit_without_a_log_says_so(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit"]) == 0
    assert "No audit log yet" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds_ago"), [("24h", 86400), ("30m", 1800), ("7d", 604800), ("2w", 1209600), ("45s", 45)]
)
def test_since_takes_spans(text: str, seconds_ago: int) -> None:
    assert parse_since(text, now=10_000_000) == 10_000_000 - seconds_ago


def test_since_takes_iso_dates_in_utc() -> None:
    assert parse_since("2026-11-01") == 1793491200.0


def test_doctor_flags_policy_entries_that_match_no_action(
    audit_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[actions]\n"revoke-membership-acess" = "deny"\n')
    assert main(["doctor", "--sandbox", "--policy", str(policy)]) == 1
    assert "FAIL  policy actions: revoke-membership-acess" in capsys.readouterr().out


async def test_audit_reads_one_tenant_s_rows_when_asked(audit_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(audit_db)
    for tenant in ("t-alice", "t-bob"):
        await log.for_tenant(tenant).intent(
            tool=f"tool-of-{tenant}",
            action=None,
            arguments={},
            risk="write",
            decision="allow",
            confirmation="policy",
            connection="c",
        )
    log.close()
    assert main(["audit", "--tenant", "t-bob", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["tool"], r["tenant"]) for r in rows] == [("tool-of-t-bob", "t-bob")]


def test_tools_and_doctor_show_which_actions_are_critical_only_because_nothing_vouches_for_them(
    audit_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        for key in ("get-reembolso", "lookup-order"):
            added = httpx2.post(
                f"{sandbox.url}/_sandbox/actions",
                json={"key": key, "cmd": "get_transaction_details", "params": ["transaction_id"]},
                headers={"Authorization": f"Bearer {sandbox.token}"},
                timeout=10,
                trust_env=False,
            )
            assert added.status_code == 200, added.text
        monkeypatch.setenv("MEMBRANE_API_URL", sandbox.url)
        monkeypatch.setenv("MEMBRANE_TOKEN", sandbox.token)
        policy = tmp_path / "policy.toml"
        policy.write_text('[risk]\n"lookup-order" = "read"\n')
        assert main(["tools", "--json", "--policy", str(policy)]) == 0
        tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
        assert main(["tools", "--policy", str(policy)]) == 0
        table = capsys.readouterr()
        assert main(["doctor", "--policy", str(policy)]) == 0
        doctor = capsys.readouterr().out
    assert (tools["get-reembolso"]["risk"], tools["get-reembolso"]["vouched_by"]) == ("critical", None)
    assert (tools["lookup-order"]["risk"], tools["lookup-order"]["vouched_by"]) == ("read", "policy")
    assert tools["refund-transaction"]["vouched_by"] == "built-in table"
    assert [line.split()[1] for line in table.out.splitlines() if line.startswith("get-reembolso ")] == ["critical*"]
    assert "[risk]" in table.err
    assert "PASS  classification: 1 critical only because nothing vouches for them (get-reembolso)" in doctor


@pytest.mark.hosted
def test_doctor_and_audit_use_redis_and_postgres_when_set_and_say_when_one_is_gone(
    audit_db: Path,
    audit_dsn: str,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KARTRA_MCP_AUDIT_DSN", audit_dsn)
    monkeypatch.setenv("KARTRA_MCP_REDIS_URL", redis.url)
    assert main(["doctor", "--sandbox"]) == 0
    out = capsys.readouterr().out
    assert "PASS  audit log: PostgreSQL" in out and "PASS  shared state: Redis" in out
    tag = {"email": "henry.jones.1@example.com", "tag_name": "VIP"}
    assert main(["call", "--sandbox", "--yes", "assign-tag", json.dumps(tag)]) == 0
    capsys.readouterr()
    assert main(["audit", "--sandbox", "--json"]) == 0
    assert [(r["tool"], r["outcome"]) for r in json.loads(capsys.readouterr().out)] == [("assign-tag", "success")]
    assert not audit_db.exists() and not sandbox_audit_path(audit_db).exists()  # nothing went to SQLite
    redis.kill()
    assert main(["doctor", "--sandbox"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  shared state:" in out and "KARTRA_MCP_REDIS_URL" in out
