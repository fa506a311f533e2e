"""The sandbox at scale: seeding time and memory, and the latency of running `get-lead` through it.

    python bench/sandbox_bench.py [--leads 100000] [--calls 2000]

Baselines, run in the same process: seeding a tenth as many leads (how seeding scales), and the
same `get-lead` answered by the Kartra engine directly (what the HTTP layer adds).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
from typing import Any

import anyio

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox, SandboxConfig
from kartra_mcp.sandbox.actions import BY_KEY
from kartra_mcp.server.runtime import membrane_client


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _seed(leads: int) -> tuple[float, Sandbox]:
    gc.collect()
    started = time.perf_counter()
    box = Sandbox(SandboxConfig(leads=leads))
    return time.perf_counter() - started, box


async def _latency(box: Sandbox, calls: int) -> tuple[list[float], list[float]]:
    live = [lead for lead in box.account.leads.values() if not lead.deleted]
    emails = [lead.email for lead in live[:: max(1, len(live) // calls)]]
    emails = (emails * (calls // len(emails) + 1))[:calls]
    action = BY_KEY["get-lead"]
    direct: list[float] = []
    for email in emails:
        started = time.perf_counter()
        box.kartra.handle(action.build({"email": email}))
        direct.append(time.perf_counter() - started)
    through: list[float] = []
    async with membrane_client(Settings(), sandbox=box) as client:
        connection = box.connections[0]["id"]
        for email in emails[:50]:  # warm up
            await client.run_action(action.id, connection_id=connection, input={"email": email}, retry_safe=True)
        for email in emails:
            started = time.perf_counter()
            run = await client.run_action(action.id, connection_id=connection, input={"email": email}, retry_safe=True)
            through.append(time.perf_counter() - started)
            assert run.output["lead_details"]["email"] == email
    return direct, through


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    base_seconds, base_box = _seed(args.leads // 10)
    base_counts: dict[str, Any] = base_box.state()["counts"]
    del base_box
    rss_before = _rss_mib()
    seconds, box = _seed(args.leads)
    counts = box.state()["counts"]
    print(
        f"seed {counts['leads']:>7} leads ({counts['transactions']} transactions, "
        f"{counts['subscriptions']} subscriptions): {seconds:6.2f} s"
    )
    print(f"seed {base_counts['leads']:>7} leads (baseline):{' ' * 31}{base_seconds:6.2f} s")
    print(
        f"  ratio: {seconds / base_seconds:.1f}x the time for {args.leads / (args.leads // 10):.0f}x the leads "
        f"({seconds / counts['leads'] * 1e6:.1f} us per lead)"
    )
    print(f"  max RSS {_rss_mib():.0f} MiB (grew {_rss_mib() - rss_before:.0f} MiB for the large account)")

    direct, through = anyio.run(_latency, box, args.calls)
    d50, d99 = _quantiles(direct)
    t50, t99 = _quantiles(through)
    print(f"\nget-lead x{args.calls} on the {counts['leads']}-lead account")
    print(f"  run over the in-process transport: p50 {t50 * 1e3:7.3f} ms   p99 {t99 * 1e3:7.3f} ms")
    print(f"  Kartra engine directly (baseline): p50 {d50 * 1e3:7.3f} ms   p99 {d99 * 1e3:7.3f} ms")
    print(f"  ratio: p50 {t50 / d50:.1f}x, p99 {t99 / d99:.1f}x   (mean {statistics.fmean(through) * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
