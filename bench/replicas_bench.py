"""Throughput of one and two kartra-mcp HTTP replicas on the same machine, sharing a real Redis and
PostgreSQL, in front of one standalone sandbox: calls per second for reads (`get-lead`), writes
(`unassign-tag`: an intent row and its outcome in PostgreSQL) and confirmed writes (`assign-tag`
with an id issued in Redis, then `confirm-action`: two calls), each from concurrent 2026-07-28
clients split evenly over the replicas. Needs `redis-server` and PostgreSQL (as the tests do).

    python bench/replicas_bench.py [--clients 8] [--calls 25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.processes import Server, free_port, local_env, standalone_sandbox  # noqa: E402
from tests.services import postgres_server, redis_server  # noqa: E402

TOKEN = "bench-http-token"
POLICY = 'on_unconfirmable = "token"\n\n[actions]\n"assign-tag" = "confirm"\n'

Work = Callable[[Client, int], Awaitable[int]]


@contextmanager
def _replicas(
    count: int, base: Path, sandbox_url: str, sandbox_token: str, redis: str, dsn: str
) -> Iterator[list[str]]:
    (base / "policy.toml").write_text(POLICY)
    with ExitStack() as stack:
        urls, servers = [], []
        for n in range(count):
            port = free_port()
            env = local_env(
                MEMBRANE_API_URL=sandbox_url,
                MEMBRANE_TOKEN=sandbox_token,
                KARTRA_MCP_HTTP_TOKEN=TOKEN,
                KARTRA_MCP_REDIS_URL=redis,
                KARTRA_MCP_AUDIT_DSN=dsn,
                KARTRA_MCP_POLICY=str(base / "policy.toml"),
                KARTRA_MCP_CACHE_DIR=str(base / f"cache-{count}-{n}"),
                KARTRA_MCP_LOG_LEVEL="WARNING",
            )
            argv = [sys.executable, "-m", "kartra_mcp", "serve", "--transport", "http", "--port", str(port)]
            server = Server(argv, env=env, logs=base / f"replica-{count}-{n}")
            stack.callback(server.stop)
            servers.append(server)
            urls.append(f"http://127.0.0.1:{port}")
        for server, url in zip(servers, urls, strict=True):
            server.wait_http(f"{url}/healthz")
        yield urls


async def _run(urls: list[str], clients: int, calls: int, work: Work) -> float:
    """Calls per second of `clients` workers, each on its replica in turn, each making `calls` operations."""
    made = [0]

    async def worker(n: int) -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(120)) as http,
            Client(streamable_http_client(f"{urls[n % len(urls)]}/mcp", http_client=http), mode="auto") as client,
        ):
            await client.list_tools()
            for i in range(calls):
                made[0] += await work(client, n * calls + i)

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for n in range(clients):
            tasks.start_soon(worker, n)
    return made[0] / (time.perf_counter() - started)


def _workloads(email: str) -> dict[str, Work]:
    async def read(client: Client, _: int) -> int:
        result = await client.call_tool("get-lead", {"email": email})
        assert not result.is_error
        return 1

    async def write(client: Client, i: int) -> int:
        result = await client.call_tool("unassign-tag", {"email": email, "tag_name": f"bench-{i}"})
        assert result.structured_content is not None or result.is_error
        return 1

    async def confirmed(client: Client, _: int) -> int:
        asked = await client.call_tool("assign-tag", {"email": email, "tag_name": "VIP"})
        assert asked.structured_content is not None
        done = await client.call_tool(
            "confirm-action", {"confirmation_id": asked.structured_content["confirmation_id"]}
        )
        assert not done.is_error
        return 2

    return {"read (get-lead)": read, "write (audit in PostgreSQL)": write, "confirmed write (id in Redis)": confirmed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        base = Path(tmp)
        sandbox = stack.enter_context(standalone_sandbox(base / "sandbox"))
        redis = stack.enter_context(redis_server(base / "redis"))
        postgres = stack.enter_context(postgres_server())
        email = sandbox.state()["samples"]["lead_with_transactions"]["email"]
        results: dict[str, dict[int, float]] = {}
        for count in (1, 2):
            dsn = postgres.new_database()
            with _replicas(count, base, sandbox.url, sandbox.token, redis.url, dsn) as urls:
                for name, work in _workloads(email).items():
                    rate = anyio.run(_run, urls, args.clients, args.calls, work)
                    results.setdefault(name, {})[count] = rate
    print(f"{args.clients} concurrent 2026-07-28 clients, {args.calls} operations each; one standalone sandbox")
    print(f"  {'workload':<32} {'1 replica':>12} {'2 replicas':>12} {'ratio':>7}")
    for name, rates in results.items():
        print(f"  {name:<32} {rates[1]:>8.1f}/s   {rates[2]:>8.1f}/s   {rates[2] / rates[1]:>5.2f}x")


if __name__ == "__main__":
    main()
