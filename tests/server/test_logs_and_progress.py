"""Log messages and progress reach the client in both eras, only when it asked, secrets redacted."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp import Client
from mcp.server import Server
from mcp.shared.exceptions import MCPDeprecationWarning

from kartra_mcp.sandbox import FaultRule, Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.app import build_server
from kartra_mcp.server.logs import REDACTED, Redactor, register
from kartra_mcp.server.runtime import Runtime
from tests.routes import run_rule
from tests.server.conftest import text_of


def _flaky_read(sandbox: Sandbox) -> None:
    """The next two runs of get-lead fail with 503, so the read is retried (with backoff) twice."""
    sandbox.faults.rules = [FaultRule(route=run_rule("act", BY_KEY["get-lead"].id), status=503, times=2)]


async def _call_flaky_read(client: Client, samples: dict[str, Any], progress: list[Any]) -> None:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    seen = progress
    email = samples["lead_with_transactions"]["email"]
    result = await client.call_tool("get-lead", {"email": email}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)


async def test_a_2025_client_gets_the_warnings_logged_during_its_call_once_it_set_a_level(
    runtime: Runtime, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    logs: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append(params)

    server, _ = build_server(runtime)
    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None
        _flaky_read(sandbox)
        await _call_flaky_read(client, samples, [])
        assert logs == []  # no level chosen yet: nothing is sent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging/setLevel is 2025-only
            await client.set_logging_level("warning")
        _flaky_read(sandbox)
        await _call_flaky_read(client, samples, [])
    assert [log.level for log in logs] == ["warning", "warning"]
    assert all("Membrane POST" in log.data and "attempt" in log.data for log in logs)


async def test_a_2026_request_gets_log_messages_only_when_it_opts_in(
    runtime: Runtime, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    for level, expected in ((None, 0), ("error", 0), ("warning", 2)):
        logs: list[Any] = []

        async def on_log(params: Any, logs: list[Any] = logs) -> None:
            logs.append(params)

        server, _ = build_server(runtime)
        async with Client(server, logging_callback=on_log, log_level=level) as client:  # type: ignore[arg-type]
            _flaky_read(sandbox)
            await _call_flaky_read(client, samples, [])
        assert len(logs) == expected, level


async def test_retries_with_backoff_report_progress_to_a_client_that_asked(
    runtime: Runtime, mode: str, sandbox: Sandbox, samples: dict[str, Any]
) -> None:
    progress: list[Any] = []
    server, _ = build_server(runtime)
    async with Client(server, mode=mode) as client:
        _flaky_read(sandbox)
        await _call_flaky_read(client, samples, progress)
    assert [step for step, _ in progress] == [1, 2]
    assert all("trying again in" in message for _, message in progress)


def test_the_redactor_hides_known_secrets_and_credential_shaped_text() -> None:
    redact = Redactor(["s3cr3t-token-value", None, "ab"])
    text = redact(
        "sent s3cr3t-token-value; Authorization: Bearer abc.def; token=xyz&x=1; "
        '{"api_key": "k-123"} eyJhbGciOi.eyJzdWIi.sig keep ab'
    )
    assert "s3cr3t" not in text and "abc.def" not in text and "xyz" not in text and "k-123" not in text
    assert "eyJ" not in text
    assert text.count(REDACTED) == 5
    assert "x=1" in text and text.endswith("keep ab")  # short strings are not treated as secrets


async def test_the_level_a_closed_2025_connection_chose_is_forgotten() -> None:
    server: Server[Any] = Server("levels")
    chosen = register(server, Redactor([]), logging.getLogger("tests.levels"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging/setLevel is 2025-only
        for _ in range(20):
            async with Client(server, mode="legacy") as client:
                await client.set_logging_level("info")
                await client.set_logging_level("debug")  # a second choice replaces the first
                assert chosen.held() == 1
    assert chosen.held() == 0  # a server up for days must not keep a level for every session it ever had
