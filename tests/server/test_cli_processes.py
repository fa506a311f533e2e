"""The `kartra-mcp` command as a person meets it: a real process, on a terminal where that matters."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
from mcp import Client, StdioServerParameters

from tests.processes import end, local_env, run, spawn, standalone_sandbox
from tests.terminal import Terminal

KARTRA_MCP = [sys.executable, "-m", "kartra_mcp"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return local_env(
        None, KARTRA_MCP_AUDIT_DB=str(tmp_path / "audit.sqlite3"), KARTRA_MCP_CACHE_DIR=str(tmp_path / "cache"), **extra
    )


def _log_lines(stderr: str) -> Iterator[tuple[str, str]]:
    """(level, logger) of each log line."""
    for match in re.finditer(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR) ([\w.]+):", stderr, re.MULTILINE):
        yield match.group(1), match.group(2)


def test_a_debug_call_logs_kartra_mcp_s_own_detail_without_transport_noise(tmp_path: Path) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        env = _env(tmp_path, MEMBRANE_API_URL=sandbox.url, MEMBRANE_TOKEN=sandbox.token)
        done = run(
            [*KARTRA_MCP, "call", "--log-level", "debug", "get-lead", '{"email": "henry.jones.1@example.com"}'],
            env=env,
            timeout=60,
        )
    assert done.returncode == 0, done.explain()
    loggers = {name for _, name in _log_lines(done.stderr)}
    assert any(name.startswith("kartra_mcp") for name in loggers), done.explain()
    assert not [name for name in loggers if name.startswith(("httpcore", "httpx", "asyncio"))], done.explain()


def test_one_shot_commands_say_only_warnings_unless_asked_for_more(tmp_path: Path) -> None:
    quiet = run([*KARTRA_MCP, "call", "--sandbox", "retrieve-account-tags"], env=_env(tmp_path), timeout=60)
    verbose = run([*KARTRA_MCP, "-v", "call", "--sandbox", "retrieve-account-tags"], env=_env(tmp_path), timeout=60)
    assert quiet.returncode == verbose.returncode == 0, quiet.explain() + verbose.explain()
    assert [level for level, _ in _log_lines(quiet.stderr) if level in ("DEBUG", "INFO")] == [], quiet.explain()
    assert "INFO" in {level for level, _ in _log_lines(verbose.stderr)}, verbose.explain()


async def test_serving_logs_one_line_per_tool_call_with_no_arguments(tmp_path: Path) -> None:
    errors = tmp_path / "stderr.txt"
    # The SDK's stdio client shares its own stderr with the server; a shell sends the server's to a file.
    params = StdioServerParameters(
        command="/bin/sh",
        args=["-c", f'exec "$0" -m kartra_mcp serve --sandbox 2>"{errors}"', sys.executable],
        env=_env(tmp_path),
    )
    with anyio.fail_after(60):
        async with Client(params, mode="auto") as client:
            read = await client.call_tool("get-lead", {"email": "henry.jones.1@example.com"})
            refund = await client.call_tool("refund-transaction", {"transaction_id": "700001"})
    assert not read.is_error and refund.is_error
    calls = [
        line.split("kartra_mcp.calls: ", 1)[1]
        for line in errors.read_text().splitlines()
        if "kartra_mcp.calls:" in line
    ]
    assert [re.sub(r" \d+ ms$", "", line) for line in calls] == [
        "get-lead class=read decision=allow outcome=success",
        # This client cannot ask the person, and nothing else can here: refused, as the audit log says.
        "refund-transaction class=critical decision=deny outcome=refused",
    ], errors.read_text()
    assert "henry.jones" not in errors.read_text() and "700001" not in errors.read_text()


def test_connect_counts_down_on_a_terminal_and_says_plainly_when_nobody_finishes(tmp_path: Path) -> None:
    with Terminal([*KARTRA_MCP, "connect", "--sandbox", "--timeout", "2"], env=_env(tmp_path)) as terminal:
        status = terminal.wait(timeout=60)
    shown = terminal.output
    assert status == 1, shown
    assert "Open this link in a browser" in shown and "\r  0:02 left" in shown and "\r  0:01 left" in shown, shown
    assert "was not connected within 0:02" in shown and "--timeout" in shown, shown
    assert "Traceback" not in shown


def test_connect_on_the_sandbox_waits_until_the_person_opens_the_link(tmp_path: Path) -> None:
    import subprocess

    process = spawn(
        [*KARTRA_MCP, "connect", "--sandbox", "--timeout", "60"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        link = ""
        for line in process.stderr:
            if line.strip().startswith("http://127.0.0.1:"):
                link = line.strip()
                break
        assert link, "no link was printed"
        page = httpx2.get(link, timeout=10, trust_env=False)
        assert page.status_code == 200 and "connected" in page.text
        printed, rest = process.communicate(timeout=30)
    finally:
        end(process)
    assert process.returncode == 0, rest
    assert printed.startswith("Connected: ") and "KARTRA_MCP_CONNECTION_ID=" in printed
    assert "still waiting" not in rest  # no countdown lines for a minute off a terminal


def test_doctor_lists_the_kartra_connections_when_the_connection_id_is_wrong(tmp_path: Path) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        connections = httpx2.get(
            f"{sandbox.url}/connections",
            headers={"Authorization": f"Bearer {sandbox.token}"},
            timeout=10,
            trust_env=False,
        ).json()["items"]
        env = _env(
            tmp_path, MEMBRANE_API_URL=sandbox.url, MEMBRANE_TOKEN=sandbox.token, KARTRA_MCP_CONNECTION_ID="nope"
        )
        done = run([*KARTRA_MCP, "doctor", "--json"], env=env, timeout=60)
    assert done.returncode == 1, done.explain()
    report = json.loads(done.stdout)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert report["passed"] is False and [c["check"] for c in failed] == ["Kartra connection"], done.stdout
    assert connections and all(c["id"] in failed[0]["fix"] for c in connections), done.stdout
    settings = next(c for c in report["checks"] if c["check"] == "settings")
    assert "MEMBRANE_TOKEN" in settings["detail"] and sandbox.token not in done.stdout + done.stderr


REFUND = ["refund-transaction", json.dumps({"transaction_id": "700001"})]


def test_a_no_at_the_terminal_is_answered_in_words_for_the_person(tmp_path: Path) -> None:
    with Terminal([*KARTRA_MCP, "call", "--sandbox", *REFUND], env=_env(tmp_path)) as terminal:
        terminal.wait_for("Refund 67.00 USD", timeout=60)
        terminal.wait_for("[y/N] ", timeout=30)
        terminal.send("no\n")
        status = terminal.wait(timeout=60)
    assert status == 1, terminal.output
    assert "Stopped: nothing was sent." in terminal.output
    assert "retry" not in terminal.output.lower() and "the person" not in terminal.output.lower()


def test_without_a_terminal_the_refusal_names_no_policy_setting(tmp_path: Path) -> None:
    done = run([*KARTRA_MCP, "call", "--sandbox", *REFUND], env=_env(tmp_path), timeout=60)
    assert done.returncode == 1, done.explain()
    said = done.stdout + done.stderr
    assert "--yes" in said and "nothing was sent" in said
    assert "on_unconfirmable" not in said and "policy" not in said, done.explain()


def test_connect_says_plainly_when_membrane_refuses_the_token(tmp_path: Path) -> None:
    with standalone_sandbox(tmp_path / "sandbox") as sandbox:
        env = _env(tmp_path, MEMBRANE_API_URL=sandbox.url, MEMBRANE_TOKEN="not-the-sandbox-token")
        done = run([*KARTRA_MCP, "connect", "--timeout", "30"], env=env, timeout=60)
    assert done.returncode == 1, done.explain()
    assert done.stderr.startswith("kartra-mcp: ") and "Traceback" not in done.stderr, done.explain()


def test_a_y_at_the_terminal_goes_ahead_and_the_prompt_speaks_to_the_person(tmp_path: Path) -> None:
    with Terminal([*KARTRA_MCP, "call", "--sandbox", "--json", *REFUND], env=_env(tmp_path)) as terminal:
        terminal.wait_for("[y/N] ", timeout=60)
        terminal.send("Y\n")
        status = terminal.wait(timeout=60)
    assert status == 0, terminal.output
    assert '"transaction_refunded": "700001"' in terminal.output
    prompt = terminal.output.split("This cannot be undone.", 1)[1].split("[y/N]", 1)[0]
    assert "y or yes" in prompt and "nothing is sent" in prompt, prompt
