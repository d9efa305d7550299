"""Rate limits under 10x load: admitted calls vs the GCRA bound, and p99 of admitted calls loaded vs unloaded.

AIDB runs as its own process (`mcp-stack serve aidb --transport http` on 127.0.0.1, bearer key; clients use the
stateless 2026-07-28 era of Streamable HTTP). Several clients share one key (one principal, so one budget) and
call `stats` on an open-loop schedule (calls start on time whether or not earlier ones finished, so queueing
shows in latency):
1. unloaded: the configured rate, all admitted -> p50/p99;
2. loaded: 10x the configured rate -> admitted count vs the bound burst + rate x elapsed, p50/p99 of the
   admitted calls, rejections (JSON-RPC rate-limit errors). Target: loaded p99 <= 3 x unloaded p99.

    python -m bench.load [--rate 5] [--burst 5] [--seconds 8] [--clients 4]

PostgreSQL: MCP_STACK_TEST_DSN / MCP_STACK_POSTGRES__DSN (a fresh database is created on it) or embedded.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from mcp.shared.exceptions import MCPError

from bench.overhead import postgres_dsn
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.e2e.hardening.processes import served
from tests.pg_fixtures import dsn_for_database
from tests.support import http_client

RESULTS = Path(__file__).parent / "results"
RATE_LIMITED = -32002  # mcp_servers.shared.middleware.mcp.RATE_LIMITED


@dataclass
class Offered:
    """What one open-loop run saw."""

    offered: int = 0
    admitted_seconds: list[float] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    @property
    def admitted(self) -> int:
        return len(self.admitted_seconds)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def gcra_bound(rate_per_second: float, burst: int, elapsed_seconds: float) -> int:
    """Most calls a GCRA limiter (level drains at `rate`, admits while level + 1 <= burst) can admit in `elapsed`."""
    return math.floor(burst + rate_per_second * elapsed_seconds)


async def offer(calls: list[Callable[[], Awaitable[object]]], rate_per_second: float, seconds: float) -> Offered:
    """Start calls on an open-loop schedule at `rate_per_second` in total, round-robin over `calls` (one per client).

    A rate-limit error counts as rejected, any other exception as an error; latencies are kept for admitted calls.
    Every call is bounded by a 30 s timeout, so the run ends by itself.
    """
    result = Offered()
    total = max(1, round(rate_per_second * seconds))
    interval = 1.0 / rate_per_second

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        began = time.perf_counter()
        try:
            with anyio.fail_after(30):
                await call()
        except MCPError as exc:
            if exc.error.code == RATE_LIMITED:
                result.rejected += 1
            else:
                result.errors.append(f"{exc.error.code}: {exc.error.message[:200]}")
            return
        except TimeoutError:
            result.errors.append("timeout")
            return
        result.admitted_seconds.append(time.perf_counter() - began)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for index in range(total):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            result.offered += 1
            tg.start_soon(one, calls[index % len(calls)])
    result.elapsed_seconds = time.perf_counter() - start
    return result


def summary(run: Offered) -> dict[str, Any]:
    return {
        "offered": run.offered,
        "admitted": run.admitted,
        "rejected": run.rejected,
        "errors": len(run.errors),
        "elapsed_seconds": round(run.elapsed_seconds, 3),
        "p50_ms": round(percentile(run.admitted_seconds, 0.50) * 1000, 3),
        "p99_ms": round(percentile(run.admitted_seconds, 0.99) * 1000, 3),
    }


async def fresh_database(server_dsn: str) -> str:
    name = f"bench_load_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return dsn_for_database(server_dsn, name)


async def main(rate: float, burst: int, seconds: float, clients: int) -> dict[str, Any]:
    async with postgres_dsn() as server_dsn:
        dsn = await fresh_database(server_dsn)
        with tempfile.TemporaryDirectory(prefix="mcpstack-bench-load-") as tmp:
            settings = load_settings(data_dir=Path(tmp) / "data", postgres={"dsn": dsn})
            async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
                token = (await KeyStore(database).create("bench-load", ["read"])).token
            limits = {
                "MCP_STACK_RATE_LIMIT__CALLS_PER_MINUTE": str(rate * 60),
                "MCP_STACK_RATE_LIMIT__BURST": str(burst),
            }
            # The server runs in its own process, as deployed: the clients' CPU does not count as server latency.
            async with served("aidb", settings, Path(tmp) / "logs", limits) as aidb:
                sessions = []
                async with contextlib.AsyncExitStack() as stack:
                    for _ in range(clients):
                        sessions.append(
                            await stack.enter_async_context(http_client(aidb.url, token, mode="2026-07-28"))
                        )
                    calls = [lambda s=s: s.call_tool("stats", {}) for s in sessions]
                    await offer(calls, rate, min(2.0, seconds))  # warm-up (connections, caches)
                    await anyio.sleep(burst / rate + 0.5)  # let the budget refill
                    unloaded = await offer(calls, rate * 0.9, seconds)
                    await anyio.sleep(burst / rate + 0.5)
                    loaded = await offer(calls, rate * 10, seconds)
    bound = gcra_bound(rate, burst, loaded.elapsed_seconds + 1.0)  # + the last call's flight time
    ratio = percentile(loaded.admitted_seconds, 0.99) / percentile(unloaded.admitted_seconds, 0.99)
    result = {
        "configured": {"calls_per_second": rate, "burst": burst, "clients": clients, "seconds": seconds},
        "unloaded": summary(unloaded),
        "loaded_10x": summary(loaded),
        "gcra_bound": bound,
        "admitted_within_bound": loaded.admitted <= bound,
        "p99_ratio": round(ratio, 3),
        "errors": (unloaded.errors + loaded.errors)[:10],
    }
    print(
        f"load: unloaded p99 {result['unloaded']['p99_ms']} ms, 10x p99 {result['loaded_10x']['p99_ms']} ms "
        f"(ratio {ratio:.2f}, target <= 3); admitted {loaded.admitted}/{loaded.offered} (bound {bound})"
    )
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5.0, help="configured calls per second (per principal+tool)")
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    results = anyio.run(main, args.rate, args.burst, args.seconds, args.clients)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "load",
        "target": "loaded (10x rate) p99 of admitted calls <= 3 x unloaded p99; admitted <= GCRA bound",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    (RESULTS / "load.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'load.json'}")


if __name__ == "__main__":
    cli()
