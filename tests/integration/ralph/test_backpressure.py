"""Ralph's workers hold back new tasks and iterations while telemetry backpressure is signalled, then resume."""

import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer, build_core
from mcp_servers.shared.telemetry import BACKPRESSURE_SIGNAL, TelemetryWriter
from tests.integration.ralph.ralph_support import PYTHON, call, make_workspace, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# Marks each start; the first iteration waits for a `release` file, the second prints the promise.
GATED = """
    import os, pathlib, time
    n = os.environ["RALPH_ITERATION"]
    pathlib.Path(f"started-{n}").write_text("", encoding="utf-8")
    if n == "1":
        deadline = time.monotonic() + 60
        while not pathlib.Path("release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("first iteration released")
    else:
        print("<promise>DONE</promise>")
"""


def gated_settings(ralph_settings: Callable[..., StackSettings], tmp_path: Path) -> StackSettings:
    script = tmp_path / "programs" / "gated.py"  # the programs directory is readable inside the sandbox
    script.write_text(textwrap.dedent(GATED), encoding="utf-8")
    # One worker slot: while the task runs, only its own loop (not the claim loop) looks at the signal.
    return ralph_settings(workers=1, command_templates={"gated": [PYTHON, str(script), "{prompt}"]})


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.02)


async def signal_backpressure(telemetry: TelemetryWriter) -> None:
    """Create the pipeline's signal file and wait until the writer has seen it."""
    await anyio.Path(telemetry.directory).mkdir(parents=True, exist_ok=True)
    await anyio.Path(telemetry.directory / BACKPRESSURE_SIGNAL).write_text('{"active": true}\n', encoding="utf-8")
    with anyio.fail_after(10):
        while not await telemetry.check_backpressure():
            await anyio.sleep(0.02)


def metric(server: StackServer[Any], line: str) -> bool:
    return line in server.core.metrics.render().decode().splitlines()


async def test_next_iteration_waits_until_the_backpressure_signal_is_removed(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = make_workspace(workspace_root, "gated")
    server = create_server(build_core("ralph", gated_settings(ralph_settings, tmp_path)))
    telemetry = server.core.telemetry
    caplog.set_level(logging.INFO, logger="mcp_servers.ralph.pool")
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="two iterations",
            backend="command:gated",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(workspace),
        )
        await wait_until((workspace / "started-1").exists)
        await signal_backpressure(telemetry)
        await (anyio.Path(workspace) / "release").write_text("", encoding="utf-8")

        # The task's loop is holding back (the only waiter with one slot busy); iteration 2 has not started.
        await wait_until(lambda: metric(server, "mcpstack_ralph_backpressure 1.0"))
        held = await call(client, "task_status", task_id=submitted["task_id"])
        assert (held["status"], held["iterations_done"]) == ("running", 1)
        assert not (workspace / "started-2").exists()

        await (anyio.Path(telemetry.directory) / BACKPRESSURE_SIGNAL).unlink()
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("completed", "promise_found", 2)
    assert metric(server, "mcpstack_ralph_backpressure 0.0")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "backpressure" in r.getMessage()]
    assert len(warnings) == 1  # once per episode, however many re-checks


async def test_no_task_is_claimed_while_backpressure_is_signalled(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, tmp_path: Path
) -> None:
    workspace = make_workspace(workspace_root, "queued")
    server = create_server(build_core("ralph", gated_settings(ralph_settings, tmp_path)))
    await (anyio.Path(workspace) / "release").write_text("", encoding="utf-8")
    async with Client(server.mcp) as client:
        await signal_backpressure(server.core.telemetry)
        # The claim loop is holding back (it has a free slot and nothing else waits).
        await wait_until(lambda: metric(server, "mcpstack_ralph_backpressure 1.0"))
        submitted = await call(
            client,
            "submit_task",
            prompt="queued under backpressure",
            backend="command:gated",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(workspace),
        )
        queued = await call(client, "task_status", task_id=submitted["task_id"])
        assert (queued["status"], queued["iterations_done"]) == ("queued", 0)

        await (anyio.Path(server.core.telemetry.directory) / BACKPRESSURE_SIGNAL).unlink()
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["iterations_done"]) == ("completed", 2)
    assert not metric(server, "mcpstack_ralph_backpressure_wait_seconds_total 0.0")
