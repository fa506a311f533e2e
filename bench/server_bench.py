"""The MCP server's own cost: a tools/call against the same action run directly, the size of
tools/list, the time from process start to the first tools/list answer over stdio, and the one-shot
commands (`--help`, `--version`, `audit`, `tools --json`).

    python bench/server_bench.py [--calls 1000] [--starts 7]     # --calls 0 or --starts 0 skips a part

Baselines, run in the same process: `get-lead` run with the Membrane client on the same sandbox
(what the MCP layer adds); a bare Python start and `python -c "import mcp.server"` (what
kartra-mcp's start adds to the SDK's own), interleaved with the starts; and the SDK's import time,
by package and module, beside what `serve` imports on top of it.
"""

from __future__ import annotations

import argparse
import compileall
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import standalone_sandbox  # noqa: E402


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


def _import_times(argv: list[str], env: dict[str, str], runs: int) -> dict[str, tuple[int, int]]:
    """Each module's least self and cumulative import time (µs) over `runs` runs of `python -X importtime ARGV`."""
    best: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *argv],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cumulative, name = line.removeprefix("import time:").split("|")
            module = name.strip()
            old = best.get(module, (int(own), int(cumulative)))
            best[module] = (min(old[0], int(own)), min(old[1], int(cumulative)))
    return best


def _by_package(times: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Import time in ms by top-level package, summed from each module's own (self) time."""
    packages: dict[str, float] = {}
    for module, (own, _) in times.items():
        top = module.split(".")[0]
        packages[top] = packages.get(top, 0.0) + own / 1000
    return dict(sorted(packages.items(), key=lambda item: -item[1]))


def _where_imports_go(env: dict[str, str], runs: int) -> None:
    """The SDK's own import time and where it goes, beside what `serve` imports on top of it."""
    sdk = _import_times(["-c", "import mcp.server"], env, runs)
    serve = _import_times(["-m", "kartra_mcp", "serve"], env, runs)  # stdin at EOF: it starts, then stops
    sdk_total = sum(own for own, _ in sdk.values()) / 1000
    serve_total = sum(own for own, _ in serve.values()) / 1000
    print(f"\nimports, least of {runs} runs of -X importtime (each module's own time, summed)")
    print(f"  `import mcp.server`: {sdk_total:.0f} ms in {len(sdk)} modules; by package:")
    print("    " + ", ".join(f"{name} {ms:.0f}" for name, ms in list(_by_package(sdk).items())[:8]))
    heaviest = sorted(sdk.items(), key=lambda item: -item[1][0])[:6]
    print("    heaviest modules (own ms): " + ", ".join(f"{m} {own / 1000:.0f}" for m, (own, _) in heaviest))
    # Within the one `serve` profile, so that run-to-run noise does not leak into the difference.
    extra = {m: t for m, t in serve.items() if m not in sdk}
    beyond = sum(own for own, _ in extra.values()) / 1000
    ours = sum(own for m, (own, _) in extra.items() if m.split(".")[0] == "kartra_mcp") / 1000
    print(
        f"  `kartra-mcp serve`: {serve_total:.0f} ms in {len(serve)} modules: the SDK's modules "
        f"{serve_total - beyond:.0f} ms, the rest {beyond:.0f} ms (kartra_mcp {ours:.0f} ms); the rest by package:"
    )
    print("    " + ", ".join(f"{name} {ms:.0f}" for name, ms in list(_by_package(extra).items())[:8]))


def _starts(starts: int, state_dir: Path) -> None:
    """Start to first tools/list over stdio from a warm cache, and each one-shot command, as real processes.

    The standalone sandbox stands in for Membrane (reachable, on loopback); one `tools` run first fills
    the catalog cache, as a person's first run would. Bytecode is compiled first and kept, as an
    installed package has it: compiling our modules on every start would be measured otherwise.
    """
    import kartra_mcp

    compileall.compile_dir(str(Path(kartra_mcp.__file__).parent), quiet=1)
    with standalone_sandbox(state_dir / "sandbox") as sandbox:
        env = sandbox.client_env(state_dir, KARTRA_MCP_LOG_LEVEL="WARNING")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            [sys.executable, "-m", "kartra_mcp", "tools", "--json"], check=True, env=env, capture_output=True
        )

        async def first_listing() -> float:
            started = time.perf_counter()
            params = StdioServerParameters(command=sys.executable, args=["-m", "kartra_mcp", "serve"], env=env)
            async with Client(params, mode="legacy") as client:
                listing = await client.list_tools()
                elapsed = time.perf_counter() - started
            assert any(tool.name == "get-lead" for tool in listing.tools)
            return elapsed

        def timed(argv: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(argv, check=True, env=env, capture_output=True)
            return time.perf_counter() - started

        # Interleaved, so a busy machine slows each alike.
        one_shot = {
            "--help": ["--help"],
            "--version": ["--version"],
            "audit": ["audit"],
            "tools --json": ["tools", "--json"],
        }
        bare, sdk, ours = [], [], []
        commands: dict[str, list[float]] = {name: [] for name in one_shot}
        for _ in range(starts):
            bare.append(timed([sys.executable, "-c", "pass"]))
            sdk.append(timed([sys.executable, "-c", "import mcp.server"]))
            ours.append(anyio.run(first_listing))
            for name, argv in one_shot.items():
                commands[name].append(timed([sys.executable, "-m", "kartra_mcp", *argv]))
        p50, _ = quantiles(ours)
        s50, _ = quantiles(sdk)
        print(f"\nprocess start to first tools/list over stdio (x{starts}, `serve`, warm cache, Membrane reachable)")
        print(f"  kartra-mcp: median {p50:.3f} s (min {min(ours):.3f}, max {max(ours):.3f})")
        print(f"  `python -c 'import mcp.server'` (baseline): median {s50:.3f} s   ratio {p50 / s50:.2f}x (goal 1.2x)")
        print(f"  bare Python start: median {quantiles(bare)[0]:.3f} s")
        print("one-shot commands, median (goal 0.3 s; `tools --json` from the warm cache, credentials set)")
        for name, samples in commands.items():
            print(f"  kartra-mcp {name:<14} {quantiles(samples)[0]:.3f} s (min {min(samples):.3f})")
        _where_imports_go(env, max(3, starts // 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="tools/calls in-process (0 skips them)")
    parser.add_argument("--starts", type=int, default=7, help="process starts of each kind (0 skips them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.calls:
            anyio.run(_calls, args.calls, Path(scratch))
        if args.starts:
            _starts(args.starts, Path(scratch))


if __name__ == "__main__":
    main()
