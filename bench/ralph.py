"""Ralph: loop overhead per iteration excluding backend time, and iterations/s with 50 concurrent tasks.

The worker pool runs real tasks against PostgreSQL (claims, leases, iteration rows, telemetry) with a backend that
answers at once and records when each call starts and ends. Overhead of one iteration = the time between the end
of one backend call and the start of the next for the same task: recording the result, loop-state update, stuck
and limit checks, the telemetry event, claiming the next iteration number. Throughput runs 50 tasks at once on
one worker pool, first with that instant backend, then with the command backend running `true` (a real process
per iteration).

    python -m bench.ralph [--iterations 300] [--tasks 50] [--task-iterations 40]

PostgreSQL: MCP_STACK_TEST_DSN / MCP_STACK_POSTGRES__DSN (a fresh database is created on it) or embedded.
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from bench.overhead import postgres_dsn
from mcp_servers.ralph.backends.command import CommandBackend
from mcp_servers.ralph.backends.port import Backend, IterationOutcome, IterationRequest
from mcp_servers.ralph.backends.registry import BackendRegistry
from mcp_servers.ralph.domain import Limits, TaskId, TaskSpec, TaskStatus
from mcp_servers.ralph.events import TaskEvents
from mcp_servers.ralph.pool import WorkerPool
from mcp_servers.ralph.queue import TaskQueue
from mcp_servers.ralph.store import TaskStore
from mcp_servers.shared.config import BreakerSettings, StackSettings, load_settings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.telemetry import TelemetryWriter

RESULTS = Path(__file__).parent / "results"


class InstantBackend:
    """Answers at once with a different output each time (so stuck detection never fires); records call times."""

    name = "bench"

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def run(self, request: IterationRequest) -> IterationOutcome:
        started = time.perf_counter()
        outcome = IterationOutcome(
            output=f"iteration {request.number}", succeeded=True, timed_out=False, exit_status=0, input_summary="bench"
        )
        self.calls[str(request.task.id)].append((started, time.perf_counter()))
        return outcome


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
        "samples": len(samples),
    }


async def fresh_database(server_dsn: str) -> str:
    name = f"bench_ralph_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    # The query may hold a socket path (embedded PostgreSQL: ?host=/tmp/...): replace the path part only.
    return urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))


async def run_tasks(
    settings: StackSettings, backend: Backend, *, tasks: int, iterations: int, concurrency: int
) -> float:
    """Queue `tasks` tasks of `iterations` iterations each; run them on one pool; return the wall seconds."""
    breakers = BreakerRegistry(settings.breaker)
    telemetry = TelemetryWriter(settings.telemetry_path, settings.telemetry.max_file_bytes, source="ralph")
    async with open_database(settings, breakers) as database:
        store = TaskStore(database)
        spec = TaskSpec(prompt="bench", backend=backend.name, limits=Limits(max_iterations=iterations))
        for _ in range(tasks):
            await store.insert(TaskId(uuid.uuid4()), spec, TaskStatus.QUEUED)
        pool = WorkerPool(
            queue=TaskQueue(database),
            backends=BackendRegistry({backend.name: backend}),
            settings=settings,
            events=TaskEvents(telemetry),
            concurrency=concurrency,
        )
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            while await database.fetchval("SELECT count(*) FROM ralph_tasks WHERE finished_at IS NULL"):
                await anyio.sleep(0.01)
            elapsed = time.perf_counter() - started
            tg.cancel_scope.cancel()
        done = await database.fetchval("SELECT count(*) FROM ralph_iterations WHERE status = 'ok'")
        assert done == tasks * iterations, f"{done} of {tasks * iterations} iterations ran"
    return elapsed


async def commit_latency(dsn: str, rounds: int = 200) -> dict[str, float]:
    """p50 of a one-row durable commit and of the same commit without waiting for the WAL flush: the floor the
    disk puts under every durable iteration start (one flush per iteration)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (n int)")
        result = {}
        for label, query in (
            ("durable_commit_p50_ms", "INSERT INTO bench_commit VALUES ($1)"),
            (
                "async_commit_p50_ms",
                "WITH s AS (SELECT set_config('synchronous_commit', 'off', true)) "
                "INSERT INTO bench_commit SELECT $1 FROM s",
            ),
        ):
            samples = []
            for n in range(rounds):
                started = time.perf_counter()
                await conn.execute(query, n)
                samples.append(time.perf_counter() - started)
            result[label] = round(percentile(samples, 0.5) * 1000, 3)
        return result
    finally:
        await conn.close()


def gaps(backend: InstantBackend) -> list[float]:
    """Seconds between the end of one backend call and the start of the next, per task."""
    samples = []
    for calls in backend.calls.values():
        samples += [start - end for (_, end), (start, _) in itertools.pairwise(calls)]
    return samples


async def main(iterations: int, tasks: int, task_iterations: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with postgres_dsn() as server_dsn:
        scratch = Path(tempfile.mkdtemp(prefix="mcpstack-bench-ralph-"))
        try:

            async def settings_for(workers: int) -> StackSettings:
                dsn = await fresh_database(server_dsn)
                return load_settings(
                    data_dir=scratch / uuid.uuid4().hex[:8],
                    postgres={"dsn": dsn, "pool_max_size": 20},
                    observability={"log_level": "WARNING"},
                    ralph={"workers": workers, "control_poll_seconds": 0.05, "lease_seconds": 60},
                )

            single = InstantBackend()
            settings = await settings_for(1)
            async with open_database(settings, BreakerRegistry(BreakerSettings())):
                pass  # applies the migrations before timing
            assert settings.postgres.dsn is not None
            results["postgres_commit"] = await commit_latency(settings.postgres.dsn.get_secret_value())
            seconds = await run_tasks(settings, single, tasks=1, iterations=iterations, concurrency=1)
            results["loop_overhead_one_task"] = summary_ms(gaps(single)) | {
                "iterations_per_second": round(iterations / seconds, 1)
            }

            concurrent = InstantBackend()
            settings = await settings_for(tasks)
            seconds = await run_tasks(settings, concurrent, tasks=tasks, iterations=task_iterations, concurrency=tasks)
            results[f"instant_backend_{tasks}_concurrent_tasks"] = {
                "iterations": tasks * task_iterations,
                "seconds": round(seconds, 3),
                "iterations_per_second": round(tasks * task_iterations / seconds, 1),
                "loop_overhead": summary_ms(gaps(concurrent)),
            }

            true_program = shutil.which("true") or "/bin/true"
            settings = await settings_for(tasks)
            command = CommandBackend("command", [true_program], settings.ralph)
            command_iterations = max(1, task_iterations // 4)
            seconds = await run_tasks(settings, command, tasks=tasks, iterations=command_iterations, concurrency=tasks)
            results[f"command_backend_true_{tasks}_concurrent_tasks"] = {
                "iterations": tasks * command_iterations,
                "seconds": round(seconds, 3),
                "iterations_per_second": round(tasks * command_iterations / seconds, 1),
            }
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=300, help="iterations of the single-task overhead run")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks of the throughput runs")
    parser.add_argument("--task-iterations", type=int, default=40, help="iterations per task (throughput runs)")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    results = anyio.run(main, args.iterations, args.tasks, args.task_iterations)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "ralph",
        "target": "loop overhead per iteration excluding backend time <= 5 ms p50",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_start": round(load_at_start, 2),
        },
        "postgres": "MCP_STACK_TEST_DSN" if os.environ.get("MCP_STACK_TEST_DSN") else "embedded or configured",
        "results": results,
    }
    (RESULTS / "ralph.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    cli()
