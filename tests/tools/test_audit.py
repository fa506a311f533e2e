from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kartra_mcp.errors import ConfigError
from kartra_mcp.tools.audit import MAX_STORED_ARGUMENTS, REDACTED, AuditLog, Outcome, redact, stored_arguments
from tests.processes import read_only


def test_secret_looking_values_are_redacted_at_any_depth() -> None:
    value = {
        "email": "a@example.com",
        "headers": {"Authorization": "Bearer x", "X-Trace": "1"},
        "body": {"api_key": "k", "lead": {"api_password": "p", "first_name": "Ann"}},
        "list": [{"token": "t"}],
        "form": "api_key=k&lead%5Bemail%5D=a%40example.com",
    }
    assert redact(value) == {
        "email": "a@example.com",
        "headers": {"Authorization": REDACTED, "X-Trace": "1"},
        "body": {"api_key": REDACTED, "lead": {"api_password": REDACTED, "first_name": "Ann"}},
        "list": [{"token": REDACTED}],
        "form": "api_key=%5Bredacted%5D&lead%5Bemail%5D=a%40example.com",
    }


async def test_an_intent_stays_unknown_until_its_outcome_is_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    row = await log.intent(
        tool="refund-transaction",
        action="refund-transaction",
        arguments={"transaction_id": "7"},
        risk="critical",
        decision="confirm",
        confirmation="elicitation",
        connection="c",
    )
    assert log.rows()[0].outcome == "unknown"
    assert await log.finish(row, "success", upstream_status=200) is None
    done = log.rows()[0]
    assert (done.outcome, done.upstream_status) == ("success", 200)
    assert done.duration_ms is not None and done.duration_ms >= 0
    log.close()


async def test_the_log_is_written_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "audit.sqlite3"
    log = AuditLog(path)
    await log.intent(
        tool="t",
        action=None,
        arguments={"token": "x"},
        risk="write",
        decision="allow",
        confirmation=None,
        connection="c",
    )
    log.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert REDACTED in db.execute("SELECT arguments FROM calls").fetchone()[0]
    assert AuditLog(path).rows()[0].tool == "t"


async def test_rows_can_be_filtered_and_counted(tmp_path: Path) -> None:
    now = [1000.0]
    log = AuditLog(tmp_path / "a.sqlite3", clock=lambda: now[0])
    rows: list[tuple[str, Outcome, str]] = [
        ("a", "success", "critical"),
        ("b", "refused", "critical"),
        ("a", "failed", "write"),
    ]
    for tool, outcome, risk in rows:
        await log.intent(
            tool=tool,
            action=None,
            arguments={},
            risk=risk,
            decision="allow",
            confirmation=None,
            connection="c",
            outcome=outcome,
        )
        now[0] += 100
    assert [r.tool for r in log.rows(tool="a")] == ["a", "a"]
    assert [r.outcome for r in log.rows(outcome="refused")] == ["refused"]
    assert [r.tool for r in log.rows(since=1050)] == ["a", "b"]
    assert await log.count_since(0, risk="critical") == 1  # refusals do not count as calls made


def test_an_unusable_audit_path_stops_with_the_setting_to_change(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="KARTRA_MCP_AUDIT_DB"):
        AuditLog(blocker / "audit.sqlite3")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("api_key=SECRET1", id="lone-pair"),
        pytest.param('{"api_key":"SECRET3"}', id="json-text"),
        pytest.param('{"api_key":"SECRET4","x":"a&b=c"}', id="json-text-with-a-form-inside"),
        pytest.param("lead[email]=a&api_password=SECRET5", id="form"),
    ],
)
def test_secrets_inside_text_are_redacted_too(text: str) -> None:
    assert "SECRET" not in str(redact({"body": text}))


async def test_a_full_disk_keeps_the_row_unknown_and_says_what_to_do(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    row = await log.intent(
        tool="assign-tag", action=None, arguments={}, risk="write", decision="allow", confirmation=None, connection="c"
    )
    # SQLite's own ceiling on the file's size stands in for a full disk: the next page cannot be had.
    pages = log._db.execute("PRAGMA page_count").fetchone()[0]
    log._db.execute(f"PRAGMA max_page_count = {pages}")
    note = await log.finish(row, "failed", error="x" * 200_000)
    assert note is not None and "could not record this" in note and "full" in note and "free space" in note
    assert log.rows()[0].outcome == "unknown"
    log.close()


async def test_a_row_keeps_a_bounded_part_of_large_arguments_and_says_it_was_cut(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    await log.intent(
        tool="edit-lead",
        action=None,
        arguments={"notes": "n" * 60_000},
        risk="write",
        decision="allow",
        confirmation=None,
        connection="c",
    )
    stored = log.rows()[0].arguments
    assert isinstance(stored, str) and len(stored) < MAX_STORED_ARGUMENTS + 100
    assert stored.endswith("characters]") and "cut at" in stored
    log.close()


def test_a_read_only_log_is_found_when_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    AuditLog(path).close()
    with read_only(path), pytest.raises(ConfigError, match=r"not writable.*KARTRA_MCP_AUDIT_DB"):
        AuditLog(path)
    with read_only(path):
        AuditLog(path, check_writable=False).close()  # reading it (kartra-mcp audit) still works


def test_arguments_nested_past_the_bound_are_not_stored_but_said_to_be() -> None:
    deep: object = "leaf"
    for _ in range(5000):
        deep = {"a": deep}
    assert "not stored: nested deeper" in json.loads(stored_arguments({"x": deep}))


def test_a_log_written_before_hosted_mode_gains_a_tenant_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL,"
            " tool TEXT NOT NULL, action TEXT, arguments TEXT NOT NULL, risk TEXT NOT NULL, decision TEXT NOT NULL,"
            " confirmation TEXT, outcome TEXT NOT NULL, upstream_status INTEGER, duration_ms REAL, error TEXT,"
            " connection TEXT)"
        )
        old.execute(
            "INSERT INTO calls (started_at, tool, arguments, risk, decision, outcome) VALUES (1, 'old', '{}', 'write',"
            " 'allow', 'success')"
        )
    reader = AuditLog(path, check_writable=False)
    assert [(r.tool, r.tenant) for r in reader.rows()] == [("old", None)]
    assert reader.rows(tenant="t1") == []
    reader.close()
    log = AuditLog(path)
    assert [(r.tool, r.tenant) for r in log.rows()] == [("old", None)]
    log.close()
    with sqlite3.connect(path) as migrated:
        assert "tenant" in {row[1] for row in migrated.execute("PRAGMA table_info(calls)")}


async def test_a_tenant_s_view_stamps_its_rows_and_counts_only_them_for_caps(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    alice, bob = log.for_tenant("alice"), log.for_tenant("bob")
    for view in (alice, alice, bob):
        await view.intent(
            tool="refund-transaction",
            action="refund-transaction",
            arguments={},
            risk="critical",
            decision="confirm",
            confirmation="token",
            connection="same-connection",
            outcome="success",
        )
    assert await alice.count_since(0, risk="critical", connection="same-connection") == 2
    assert await bob.count_since(0, risk="critical", connection="same-connection") == 1
    assert await log.count_since(0, risk="critical", connection="same-connection") == 3
    assert {r.tenant for r in bob.rows()} == {"bob"}
    assert len(log.rows()) == 3
    log.close()
