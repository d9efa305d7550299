"""Ralph workers as real processes (`mcp-stack worker ralph`): a SIGKILLed worker's task is resumed by another
without running any iteration twice; two workers drain 50 queued tasks, each iteration exactly once."""

import contextlib
import json
import os
import signal
import subprocess
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio.abc import Process
from mcp import Client

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.ralph.ralph_support import PYTHON, call, make_workspace, read_iterations, wait_for_status
from tests.support import VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


def worker_env(settings: StackSettings, **ralph: object) -> dict[str, str]:
    """The environment of a worker process sharing the test's database, templates and workspace roots."""
    assert settings.postgres.dsn is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    shared = {"command_templates", "workspace_roots", "allow_task_commands", "sandbox_ro_binds"}
    section = settings.ralph.model_dump(mode="json", include=shared) | ralph
    env |= {
        "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "INFO",
        "MCP_STACK_RALPH__LEASE_SECONDS": "2",
        "MCP_STACK_RALPH__CONTROL_POLL_SECONDS": "0.1",
    }
    env |= {f"MCP_STACK_RALPH__{key.upper()}": json.dumps(value) for key, value in section.items()}
    return env


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str], log: Path, concurrency: int = 4) -> AsyncIterator[Process]:
    """Start `mcp-stack worker ralph`; wait until it is ready; SIGTERM (or reap) it on exit."""
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            [str(VENV_BIN / "mcp-stack"), "worker", "ralph", "--concurrency", str(concurrency)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            with anyio.fail_after(60):
                while b"ralph worker process ready" not in await anyio.Path(log).read_bytes():
                    if process.returncode is not None:
                        raise RuntimeError(f"worker exited early: {(await anyio.Path(log).read_text())[-2000:]}")
                    await anyio.sleep(0.05)
            yield process
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(10):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def test_a_sigkilled_workers_task_is_resumed_by_another_without_running_an_iteration_twice(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, tmp_path: Path
) -> None:
    settings = ralph_settings(workers=0)  # the in-process server only submits and observes
    env = worker_env(settings)
    workspace = make_workspace(workspace_root, "crash")
    log = workspace / "iterations.log"
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        async with worker_process(env, tmp_path / "worker-a.log") as first:
            submitted = await call(
                client,
                "submit_task",
                prompt="log and sleep",
                backend="command:slow_logger",
                completion_promise="FINISHED",
                max_iterations=10,
                workspace=str(workspace),
            )
            with anyio.fail_after(30):
                while not log.exists() or "start 2" not in log.read_text():
                    await anyio.sleep(0.02)
            first.send_signal(signal.SIGKILL)  # mid-iteration 2
            await first.wait()
        async with worker_process(env, tmp_path / "worker-b.log"):
            task = await wait_for_status(client, submitted["task_id"], timeout=60)
        iterations = await read_iterations(client, submitted["task_id"])
    starts = Counter(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start "))
    numbers = [item["number"] for item in iterations]
    assert (task["status"], task["completion_reason"]) == ("completed", "promise_found")
    assert numbers == list(range(1, len(numbers) + 1))
    assert iterations[1]["status"] == "interrupted"
    assert all(item["status"] == "ok" for item in iterations[2:])
    assert all(count == 1 for count in starts.values()), starts  # no iteration executed twice
    assert sorted(int(number) for number in starts) == numbers


async def test_a_restarted_worker_takes_its_dead_predecessors_task_back_at_once_not_after_the_lease(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, tmp_path: Path
) -> None:
    settings = ralph_settings(workers=0)
    # A lease far longer than the test may wait: the task can only resume because the new worker saw that the
    # process holding it is dead.
    env = worker_env(settings) | {"MCP_STACK_RALPH__LEASE_SECONDS": "600"}
    workspace = make_workspace(workspace_root, "restart")
    log = workspace / "iterations.log"
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        async with worker_process(env, tmp_path / "worker-a.log") as first:
            submitted = await call(
                client,
                "submit_task",
                prompt="log and sleep",
                backend="command:slow_logger",
                completion_promise="FINISHED",
                max_iterations=10,
                workspace=str(workspace),
            )
            with anyio.fail_after(30):
                while not log.exists() or "start 2" not in log.read_text():
                    await anyio.sleep(0.02)
            first.send_signal(signal.SIGKILL)  # like a crash, or the terminal closed under `make run`
            await first.wait()
        async with worker_process(env, tmp_path / "worker-b.log"):
            task = await wait_for_status(client, submitted["task_id"], timeout=30)
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("completed", "promise_found")
    assert iterations[1]["status"] == "interrupted"
    assert "took over tasks of a dead worker" in (tmp_path / "worker-b.log").read_text()


async def test_two_workers_drain_fifty_tasks_each_iteration_exactly_once(
    ralph_settings: Callable[..., StackSettings], tmp_path: Path
) -> None:
    # Each run appends to runs.log in its task's own workspace (a sandboxed agent can write nowhere else);
    # the test reads them all from the data dir afterwards.
    program = tmp_path / "programs" / "counted.py"
    program.write_text(
        textwrap.dedent(
            """
            import os
            with open("runs.log", "a", encoding="utf-8") as log:
                log.write(f"{os.environ['RALPH_TASK_ID']} {os.environ['RALPH_ITERATION']}\\n")
            print("<promise>COUNTED</promise>" if os.environ["RALPH_ITERATION"] == "2" else "again")
            """
        ),
        encoding="utf-8",
    )
    settings = ralph_settings(workers=0, command_templates={"counted": [PYTHON, str(program)]})
    env = worker_env(settings)
    server = create_server(build_core("ralph", settings))
    async with (
        Client(server.mcp) as client,
        worker_process(env, tmp_path / "worker-a.log"),
        worker_process(env, tmp_path / "worker-b.log"),
    ):
        ids = [
            (
                await call(
                    client,
                    "submit_task",
                    prompt=f"task {n}",
                    backend="command:counted",
                    completion_promise="COUNTED",
                    max_iterations=5,
                )
            )["task_id"]
            for n in range(50)
        ]
        with anyio.fail_after(120):
            while True:
                done = await call(client, "list_tasks", status="completed", limit=200)
                if len(done["tasks"]) == 50:
                    break
                await anyio.sleep(0.2)
    workspaces = settings.data_dir / "ralph" / "workspaces"
    runs = [line for task_id in ids for line in (workspaces / task_id / "runs.log").read_text().splitlines()]
    assert len(runs) == 100 and len(set(runs)) == 100
    assert set(runs) == {f"{task_id} {n}" for task_id in ids for n in (1, 2)}
    assert settings.postgres.dsn is not None
    connection = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        workers = await connection.fetchval(
            "SELECT count(DISTINCT split_part(worker_id, ':', 2)) FROM ralph_iterations"
        )
        statuses = await connection.fetch("SELECT status, count(*) FROM ralph_iterations GROUP BY status")
    finally:
        await connection.close()
    assert workers == 2  # both processes took part
    assert {row["status"]: row["count"] for row in statuses} == {"ok": 100}
