"""The audit log under strain: a read while another process holds the log locked, and what 60
unconfirmed previews with a large argument cost in log size and memory.

    python bench/audit_bench.py [--hold 2] [--size 1048576]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from kartra_mcp.config import Settings
from kartra_mcp.sandbox import Sandbox
from kartra_mcp.server.runtime import open_runtime
from kartra_mcp.tools.audit import AuditLog
from kartra_mcp.tools.executor import NoConfirmer

_HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


async def _locked(hold: float, state: Path) -> None:
    sandbox = Sandbox()
    settings = Settings(audit_db=state / "audit.sqlite3", cache_dir=state / "cache")
    async with open_runtime(settings, sandbox=sandbox) as runtime:
        email = sandbox.state()["samples"]["lead"]["email"]
        assert isinstance(runtime.audit, AuditLog)
        assert runtime.audit.path is not None
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(runtime.audit.path), str(hold)], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None
        holder.stdout.readline()
        took: dict[str, float] = {}
        started = time.perf_counter()

        async def write() -> None:
            await runtime.executor.call("assign-tag", {"email": email, "tag_name": "VIP"}, NoConfirmer())
            took["write"] = time.perf_counter() - started

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write)
            await anyio.sleep(0.05)
            await runtime.executor.call("get-lead", {"email": email}, NoConfirmer())
            took["read"] = time.perf_counter() - started
        holder.wait()
        holder.stdout.close()
    print(f"log locked {hold:g} s by another process; a write starts, a read 50 ms later")
    print(f"  read done after   {took['read'] * 1e3:8.0f} ms")
    print(f"  write done after  {took['write'] * 1e3:8.0f} ms")


async def _previews(size: int, state: Path) -> None:
    sandbox = Sandbox()
    settings = Settings(audit_db=state / "audit.sqlite3", cache_dir=state / "cache")
    async with open_runtime(settings, sandbox=sandbox) as runtime:
        email = sandbox.state()["samples"]["lead"]["email"]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(60):
            body = {
                "lead": {"email": email, "notes": "x" * size},
                "actions": [{"cmd": "unassign_tag", "tag_name": "VIP"}],
            }
            await runtime.executor.call("kartra-api-request", {"body": body}, NoConfirmer())
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert isinstance(runtime.audit, AuditLog)
        path = runtime.audit.path
    assert path is not None
    stored = sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
    print(f"60 unconfirmed previews, each with a {size}-byte argument")
    print(f"  audit log         {stored / 1024:8.0f} KiB")
    print(f"  peak memory grew  {grown / 1024:8.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        anyio.run(_locked, args.hold, Path(state) / "locked")
        anyio.run(_previews, args.size, Path(state) / "previews")


if __name__ == "__main__":
    main()
