"""The account kept in SQLite: a change survives closing and reopening, in-process and as a standalone server."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from kartra_mcp.sandbox import Sandbox, SandboxConfig
from tests.sandbox.conftest import http_client, kartra, lead, output, snapshot


async def test_a_changed_account_is_the_same_after_closing_and_reopening_its_db(tmp_path: Path) -> None:
    db = tmp_path / "account.sqlite3"
    sandbox = Sandbox(SandboxConfig(db=db, leads=40))
    samples = sandbox.state()["samples"]
    async with http_client(sandbox) as client:
        created = await output(
            client,
            "create-lead",
            {"email": "kept@example.com", "custom_fields": [{"field_identifier": "interests", "field_value": ["621"]}]},
        )
        await kartra(
            client, {"lead": {"email": "kept@example.com"}, "actions": [{"cmd": "assign_tag", "tag_name": "VIP"}]}
        )
        await output(
            client,
            "edit-lead",
            {"lead_id": samples["lead"]["id"], "new_email": "moved@example.com", "first_name": "Moved"},
        )
        sale = samples["refundable_transaction"]
        await output(client, "refund-transaction", {"transaction_id": sale["transaction_id"], "refund_amount": 5})
        await output(
            client, "cancel-subscription", {"transaction_id": samples["active_subscription"]["transaction_id"]}
        )
        await output(
            client, "create-custom-field", {"custom_field_identifier": "kept", "custom_field_type": "input_field"}
        )
        await output(
            client,
            "revoke-membership-access",
            {
                "email": samples["lead_with_membership"]["email"],
                "membership_name": samples["lead_with_membership"]["membership_name"],
            },
        )
    changed = snapshot(sandbox)
    sandbox.close()

    reopened = Sandbox(SandboxConfig(db=db, leads=40))
    assert snapshot(reopened) == changed
    async with http_client(reopened) as client:
        kept = await lead(client, email="kept@example.com")
        assert kept["id"] == created["lead_details"]["id"]
        assert [t["tag_name"] for t in kept["tags"]] == ["VIP"]
        assert (await output(client, "get-lead", {"email": samples["lead"]["email"]}))["type"] == "234"
        assert (await lead(client, email="moved@example.com"))["first_name"] == "Moved"
        rest = await output(client, "refund-transaction", {"transaction_id": sale["transaction_id"]})
        assert float(rest["refund_amount"]) == sale["amount"] - 5
        again = await output(
            client, "cancel-subscription", {"transaction_id": samples["active_subscription"]["transaction_id"]}
        )
        assert again["type"] == "252"
        newer = await output(client, "create-lead", {"email": "newer@example.com"})
        assert int(newer["lead_details"]["id"]) == int(kept["id"]) + 1  # ids continue, never reused
    reopened.close()


def test_a_db_is_seeded_only_while_it_is_empty(tmp_path: Path) -> None:
    db = tmp_path / "account.sqlite3"
    first = Sandbox(SandboxConfig(db=db, seed=1, leads=30))
    seeded = snapshot(first)
    first.close()
    second = Sandbox(SandboxConfig(db=db, seed=2, leads=80))
    assert snapshot(second) == seeded
    assert second.state()["counts"]["leads"] == 30
    second.close()


async def test_a_reset_rewrites_the_db(tmp_path: Path) -> None:
    db = tmp_path / "account.sqlite3"
    sandbox = Sandbox(SandboxConfig(db=db, leads=20))
    async with http_client(sandbox) as client:
        await output(client, "create-lead", {"email": "gone@example.com"})
        reset = await client.post("/_sandbox/reset", json={"seed": 3, "leads": 12})
        assert reset.status_code == 200
    fresh = snapshot(sandbox)
    sandbox.close()
    reopened = Sandbox(SandboxConfig(db=db))
    assert snapshot(reopened) == fresh
    assert reopened.state()["counts"]["leads"] == 12
    reopened.close()


async def test_a_refused_call_leaves_the_db_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "account.sqlite3"
    sandbox = Sandbox(SandboxConfig(db=db, leads=20))
    before = snapshot(sandbox)
    async with http_client(sandbox) as client:
        refused = await kartra(
            client,
            {
                "lead": {
                    "id": "1",
                    "first_name": "Nope",
                    "custom_fields": [{"field_identifier": "plan_interest", "field_value": "1"}],
                },
                "actions": [{"cmd": "edit_lead"}],
            },
        )
        assert refused["actions"][0]["edit_lead"]["type"] == "271"
    assert snapshot(sandbox) == before
    sandbox.close()
    reopened = Sandbox(SandboxConfig(db=db))
    assert snapshot(reopened) == before
    reopened.close()


# -- the standalone server, over a real socket ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _banner(process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout: float) -> tuple[str, str]:
    """The base URL and token the sandbox prints when it starts, read from its stdout's lines."""
    deadline = time.monotonic() + timeout
    url = token = None
    while url is None or token is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the sandbox printed no address and token within {timeout:g}s")
        if line is None:
            pytest.fail(f"the sandbox exited with {process.wait()} before printing its address and token")
        if found := re.search(r" at (http://\S+)$", line.strip()):
            url = found.group(1)
        if line.startswith("token: "):
            token = line.removeprefix("token: ").strip()
    return url, token


@contextmanager
def standalone(db: Path, logs: Path) -> Iterator[tuple[httpx2.Client, str]]:
    """`kartra-mcp sandbox` on a free port over `db`; a client for it and the URL it printed. Always stopped."""
    port = _free_port()
    argv = [sys.executable, "-m", "kartra_mcp", "sandbox", "--port", str(port), "--db", str(db), "--leads", "50"]
    with (
        logs.open("a") as stderr,
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True, env=dict(os.environ)
        ) as process,
    ):
        assert process.stdout is not None
        stdout, lines = process.stdout, queue.Queue[str | None]()

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            url, token = _banner(process, lines, timeout=30)
            # The address is printed just before the server binds; connecting retries (0, 0.5, 1, 2 … s) cover that.
            with httpx2.Client(
                base_url=url,
                headers={"authorization": f"Bearer {token}"},
                transport=httpx2.HTTPTransport(retries=6),
                timeout=10,
                trust_env=False,
            ) as client:
                yield client, url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            reader.join(timeout=10)  # it ends at the closed pipe's EOF, before the pipe is closed on our side


def _run(client: httpx2.Client, key: str, data: dict[str, Any]) -> Any:
    response = client.post(f"/actions/{key}/run", json={"input": data})
    assert response.status_code == 200, response.text
    return response.json()["output"]


def test_the_standalone_sandbox_keeps_its_account_in_its_db_across_restarts(tmp_path: Path) -> None:
    db, logs = tmp_path / "sandbox.sqlite3", tmp_path / "stderr.txt"
    with standalone(db, logs) as (client, _):
        assert client.get("/_sandbox/state").json()["counts"]["leads"] == 50
        assert _run(client, "create-lead", {"email": "survivor@example.com"})["status"] == "Success"
        assert _run(client, "assign-tag", {"email": "survivor@example.com", "tag_name": "VIP"})["type"] == "103"
    assert db.exists()
    with standalone(db, logs) as (client, _):
        assert client.get("/_sandbox/state").json()["counts"]["leads"] == 51
        details = _run(client, "get-lead", {"email": "survivor@example.com"})["lead_details"]
        assert [t["tag_name"] for t in details["tags"]] == ["VIP"]


def _listening(port: int) -> set[str]:
    """Local addresses (as /proc/net shows them) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp6").exists(), reason="reads the listening sockets from Linux's /proc/net")
def test_the_standalone_sandbox_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    with standalone(tmp_path / "sandbox.sqlite3", tmp_path / "stderr.txt") as (client, url):
        assert client.get("/connections").status_code == 200
        host, port = httpx2.URL(url).host, httpx2.URL(url).port
        assert host == "127.0.0.1" and port is not None
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no wildcard or IPv6 socket
