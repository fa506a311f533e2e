"""The MCP server's own cost: a tools/call against the same action run directly, the size of
tools/list, and the time from process start to the first tools/list answer over stdio.

    python bench/server_bench.py [--calls 1000] [--starts 5]

Baselines, run in the same process: `get-lead` run with the Membrane client on the same sandbox
(what the MCP layer adds), and a bare Python interpreter start (what kartra-mcp's start adds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from kartra_mcp.config import Settings
from kartra_mcp.membrane import MembraneClient
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.schemas import argument_problems
from kartra_mcp.server.app import build_server
from kartra_mcp.server.runtime import Runtime, membrane_client, open_runtime
from kartra_mcp.tools.classify import classify
from kartra_mcp.tools.executor import NoConfirmer
from kartra_mcp.tools.policy import Target


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def direct_calls(client: MembraneClient, connection: str, emails: list[str]) -> list[float]:
    """`get-lead` run with the Membrane client, once per email after 50 to warm up: the floor."""
    action = BY_KEY["get-lead"]
    for email in emails[:50]:
        await client.run_action(action.id, connection_id=connection, input={"email": email}, retry_safe=True)
    samples = []
    for email in emails:
        started = time.perf_counter()
        await client.run_action(action.id, connection_id=connection, input={"email": email}, retry_safe=True)
        samples.append(time.perf_counter() - started)
    return samples


def _line(label: str, samples: list[float]) -> str:
    p50, p99 = quantiles(samples)
    return f"  {label:<44} p50 {p50 * 1e3:7.3f} ms   p99 {p99 * 1e3:7.3f} ms"


async def _calls(calls: int, state_dir: Path) -> None:
    sandbox = Sandbox()
    emails = [lead.email for lead in sandbox.account.leads.values() if not lead.deleted]
    emails = (emails * (calls // len(emails) + 1))[:calls]
    settings = Settings(audit_db=state_dir / "audit.sqlite3", cache_dir=state_dir / "cache")
    async with membrane_client(settings, sandbox=sandbox) as client:
        direct = await direct_calls(client, sandbox.connections[0]["id"], emails)

    async with open_runtime(settings, sandbox=sandbox) as runtime:
        server, _ = build_server(runtime, page_size=1000)
        results: dict[str, list[float]] = {}
        # The call pipeline without MCP: lookup, validation, classification, policy, the call, its record.
        pipeline: list[float] = []
        for email in emails[:50]:
            await runtime.executor.call("get-lead", {"email": email}, NoConfirmer())
        for email in emails:
            started = time.perf_counter()
            await runtime.executor.call("get-lead", {"email": email}, NoConfirmer())
            pipeline.append(time.perf_counter() - started)
        steps = _pipeline_steps(runtime, emails)
        listing_bytes = tool_bytes = tool_count = 0
        for mode in ("legacy", "auto"):
            samples: list[float] = []
            async with Client(server, mode=mode) as mcp:
                listing = await mcp.list_tools()
                tool_count = len(listing.tools)
                listing_bytes = len(listing.model_dump_json(by_alias=True, exclude_none=True).encode())
                tool_bytes = sum(
                    len(t.model_dump_json(by_alias=True, exclude_none=True).encode()) for t in listing.tools
                )
                for email in emails[:50]:
                    await mcp.call_tool("get-lead", {"email": email})
                for email in emails:
                    started = time.perf_counter()
                    result = await mcp.call_tool("get-lead", {"email": email})
                    samples.append(time.perf_counter() - started)
                    assert not result.is_error
            results[mode] = samples

    base50, base99 = quantiles(direct)
    print(f"get-lead x{calls} on the embedded sandbox")
    print(_line("Membrane client run_action (baseline)", direct))
    p50, _ = quantiles(pipeline)
    print(_line("Executor.call, no MCP", pipeline) + f"   adds {(p50 - base50) * 1e6:.0f} us p50")
    for step, seconds in steps.items():
        print(f"    of which {step:<36} {seconds * 1e6:7.1f} us per call")
    for mode, label in (
        ("legacy", "tools/call, 2025-11-25 (in-memory transport)"),
        ("auto", "tools/call, 2026-07-28 (direct dispatch)"),
    ):
        p50, p99 = quantiles(results[mode])
        print(
            _line(label, results[mode])
            + f"   ratio p50 {p50 / base50:.2f}x, p99 {p99 / base99:.2f}x, adds {(p50 - base50) * 1e3:.2f} ms p50"
        )
    print(
        f"\ntools/list: {tool_count} tools, {listing_bytes} bytes of JSON; "
        f"{tool_bytes / tool_count:.0f} bytes per tool "
        "(each tool's own JSON, as bench/side_by_side.py counts it)"
    )


def _pipeline_steps(runtime: Runtime, emails: list[str]) -> dict[str, float]:
    """Mean time of each guardrail step the pipeline runs before sending, on its own."""
    spec = next(s for s in runtime.executor.tools() if s.name == "get-lead")
    arguments = [{"email": email} for email in emails]
    policy = runtime.executor.policy

    def mean(step: Callable[[dict[str, Any]], object]) -> float:
        started = time.perf_counter()
        for args in arguments:
            step(args)
        return (time.perf_counter() - started) / len(arguments)

    return {
        "argument validation": mean(lambda args: argument_problems(spec.input_schema, args)),
        "classification": mean(lambda args: classify("get-lead", spec.title, None, policy.risk)),
        "policy decision": mean(lambda args: policy.decide(spec.name, [Target(spec.action_key, spec.risk)])),
    }


def _first_listing(starts: int, state_dir: Path) -> None:
    env = {"KARTRA_MCP_AUDIT_DB": str(state_dir / "audit.sqlite3"), "KARTRA_MCP_LOG_LEVEL": "WARNING"}

    async def once() -> float:
        started = time.perf_counter()
        params = StdioServerParameters(command=sys.executable, args=["-m", "kartra_mcp", "serve", "--sandbox"], env=env)
        async with Client(params, mode="legacy") as client:
            await client.list_tools()
            return time.perf_counter() - started

    def timed(argv: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(argv, check=True, env={**os.environ, **env}, capture_output=True)
        return time.perf_counter() - started

    # Interleaved, so a busy machine slows each alike.
    bare, sdk, ours = [], [], []
    commands: dict[str, list[float]] = {"--help": [], "--version": [], "audit": []}
    for _ in range(starts):
        bare.append(timed([sys.executable, "-c", "pass"]))
        sdk.append(timed([sys.executable, "-c", "import mcp.server"]))
        ours.append(anyio.run(once))
        for command, samples in commands.items():
            samples.append(timed([sys.executable, "-m", "kartra_mcp", command]))
    p50, _ = quantiles(ours)
    s50, _ = quantiles(sdk)
    b50, _ = quantiles(bare)
    print(f"\nprocess start to first tools/list answer over stdio (x{starts}, `serve --sandbox`, warm cache)")
    print(f"  kartra-mcp: median {p50:.3f} s (min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"  `python -c 'import mcp.server'` (baseline): median {s50:.3f} s   ratio {p50 / s50:.2f}x")
    print(f"  bare Python start: median {b50:.3f} s")
    for command, samples in commands.items():
        print(f"  kartra-mcp {command}: median {quantiles(samples)[0]:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        anyio.run(_calls, args.calls, Path(scratch))
        _first_listing(args.starts, Path(scratch))


if __name__ == "__main__":
    main()
