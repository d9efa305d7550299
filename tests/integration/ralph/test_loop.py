"""Ralph's loop over real MCP (in-process client), with small real programs as the command backend."""

import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.telemetry import Checkpoint, TelemetryReader
from tests.integration.ralph.ralph_support import (
    PYTHON,
    call,
    make_workspace,
    program_command,
    read_iterations,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_promise_on_third_run_completes_the_task(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "third")
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="edit count.txt until done",
            backend="command:third_time",
            completion_promise="DONE",
            max_iterations=10,
            workspace=str(workspace),
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("completed", "promise_found", 3)
    assert [item["status"] for item in iterations] == ["ok", "ok", "ok"]
    assert [item["completed_task"] for item in iterations] == [False, False, True]
    assert [item["exit_status"] for item in iterations] == [0, 0, 0]
    assert "run 2: edited count.txt" in iterations[1]["output"]
    assert (workspace / "count.txt").read_text() == "3"
    metrics = server.core.metrics.render().decode()
    assert 'mcpstack_ralph_iterations_total{outcome="ok"} 3.0' in metrics
    assert 'mcpstack_ralph_tasks_finished_total{status="completed"} 1.0' in metrics


async def test_verify_command_exit_zero_completes_the_task(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "verify")
    check = f"{PYTHON} -c \"import pathlib, sys; sys.exit(0 if pathlib.Path('result.txt').exists() else 1)\""
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="produce result.txt",
            backend="command:writes_on_second",
            verify_command=check,
            max_iterations=10,
            workspace=str(workspace),
        )
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("completed", "verify_passed", 2)


async def test_max_iterations_ends_with_limit_reached_never_completed(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="never finishes",
            backend="command:never_done",
            completion_promise="DONE",
            max_iterations=3,
            workspace=str(make_workspace(workspace_root, "limit")),
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == (
        "limit_reached",
        "max_iterations",
        3,
    )
    assert [item["number"] for item in iterations] == [1, 2, 3]


async def test_same_output_three_times_ends_the_task_as_stuck(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    server = create_server(build_core("ralph", ralph_settings(stuck_repeat_threshold=3)))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="think",
            backend="command:repeats",
            completion_promise="DONE",
            max_iterations=10,
        )
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("stuck", "repeated_output", 3)


async def test_consecutive_failures_end_the_task_as_failed_after_backoff(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    settings = ralph_settings(max_consecutive_failures=3, backoff_base_seconds=0.2, backoff_max_seconds=1.0)
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        submitted = await call(
            client, "submit_task", prompt="fail", backend="command:fails", completion_promise="DONE", max_iterations=10
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == (
        "failed",
        "consecutive_failures",
        3,
    )
    assert [(item["status"], item["exit_status"]) for item in iterations] == [("failed", 3)] * 3
    # Exponential backoff, by the database's timestamps: >= 0.2 s after the first failure, >= 0.4 s after the second.
    gaps = [(later["started_at"], earlier["finished_at"]) for earlier, later in itertools.pairwise(iterations)]
    seconds = [(datetime.fromisoformat(a) - datetime.fromisoformat(b)).total_seconds() for a, b in gaps]
    assert seconds[0] >= 0.2 and seconds[1] >= 0.4


async def test_cost_cap_with_an_agent_whose_output_reports_no_usage_fails_closed(
    ralph_settings: Callable[..., StackSettings], programs: Path
) -> None:
    # A template that promises claude's JSON but whose program prints plain text: the cost is unknown.
    templates = {"plain": {"argv": [PYTHON, str(programs / "never_done.py")], "output": "claude_json"}}
    server = create_server(build_core("ralph", ralph_settings(command_templates=templates)))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="costly",
            backend="command:plain",
            completion_promise="DONE",
            max_iterations=10,
            max_cost_usd=5.0,
        )
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == (
        "limit_reached",
        "cost_unreported",
        1,
    )
    assert task["cost_known"] is False


async def test_every_state_change_emits_a_telemetry_event(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    settings = ralph_settings()
    server = create_server(build_core("ralph", settings))
    reader = TelemetryReader(settings.telemetry_path)

    async def ralph_events(task_id: str) -> list[str]:
        events, _ = await reader.read(Checkpoint(), max_events=10_000)
        return [event.type for event in events if event.data.get("task_id") == task_id]

    async with Client(server.mcp) as client:
        done = await call(
            client,
            "submit_task",
            prompt="edit",
            backend="command:third_time",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(make_workspace(workspace_root, "events")),
        )
        await wait_for_status(client, done["task_id"])
        parked = await call(client, "submit_task", prompt="p", backend="command", require_approval=True)
        await call(client, "stop_task", task_id=parked["task_id"])
        with anyio.fail_after(10):  # iteration events are written in the background
            while (await ralph_events(done["task_id"])).count("ralph.iteration_finished") < 3:
                await anyio.sleep(0.05)
        finished = await ralph_events(done["task_id"])
        stopped = await ralph_events(parked["task_id"])
    assert finished[:2] == ["ralph.task_submitted", "ralph.task_started"]
    assert finished.count("ralph.iteration_finished") == 3 and "ralph.task_finished" in finished
    assert stopped == ["ralph.task_submitted", "ralph.task_stop_requested", "ralph.task_finished"]


async def test_time_limit_cuts_a_running_iteration_and_ends_with_max_seconds(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="sleep",
            backend="command:sleeper",
            max_iterations=5,
            max_seconds=1.0,
            workspace=str(make_workspace(workspace_root, "timed")),
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("limit_reached", "max_seconds")
    assert [(item["status"], item["exit_status"]) for item in iterations] == [("timeout", None)]


async def test_verify_output_is_kept_shown_and_fed_to_the_next_iteration(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, programs: Path
) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="make the test pass",
            backend="command:learns_from_verify",
            verify_command=program_command(programs, "answer_check"),
            max_iterations=5,
            workspace=str(make_workspace(workspace_root, "feedback")),
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("completed", "verify_passed", 2)
    assert task["feed_verify_output"] is True
    assert [item["verify_exit_status"] for item in iterations] == [1, 0]
    assert "FAILED test_answer: answer.txt must contain 42" in iterations[0]["verify_output"]
    assert [item["output"].strip() for item in iterations] == ["no idea what to write", "wrote the answer"]
    assert task["last_verify"] == {"iteration": 2, "exit_status": 0, "output": "1 passed\n"}


async def test_without_feedback_the_loop_shows_the_failing_verify_output_when_it_gives_up(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, programs: Path
) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="make the test pass",
            backend="command:learns_from_verify",
            verify_command=program_command(programs, "answer_check"),
            feed_verify_output=False,
            max_iterations=2,
            workspace=str(make_workspace(workspace_root, "nofeedback")),
        )
        task = await wait_for_status(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("limit_reached", "max_iterations")
    assert task["feed_verify_output"] is False
    assert task["last_verify"]["iteration"] == 2
    assert task["last_verify"]["exit_status"] == 1
    assert "answer.txt must contain 42" in task["last_verify"]["output"]


async def test_claude_json_output_gives_the_answer_tokens_and_cost_and_the_cap_ends_the_task(
    ralph_settings: Callable[..., StackSettings], programs: Path
) -> None:
    templates = {"claude": {"argv": [PYTHON, str(programs / "claude_json.py"), "{prompt}"], "output": "claude_json"}}
    server = create_server(build_core("ralph", ralph_settings(command_templates=templates)))
    async with Client(server.mcp) as client:
        submitted = await call(
            client, "submit_task", prompt="spend", backend="command:claude", max_iterations=10, max_cost_usd=1.0
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("limit_reached", "max_cost", 3)
    assert (task["cost_known"], task["cost_usd"]) == (True, pytest.approx(1.2))
    assert [item["output"] for item in iterations] == ["changed file 1", "changed file 2", "changed file 3"]
    assert [item["tokens"] for item in iterations] == [125, 125, 125]
    assert [item["cost_usd"] for item in iterations] == [pytest.approx(0.4)] * 3
