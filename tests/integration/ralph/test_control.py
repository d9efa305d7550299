"""Stopping, approval, submit-time validation, listing and resources of Ralph over real MCP."""

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client, MCPError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import INVALID_PARAMS, ResourceUpdatedNotification

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.ralph.ralph_support import (
    call,
    make_workspace,
    program_command,
    read_iterations,
    sleeper_pids,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child may linger as a zombie until its parent reaps it; that is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _start_sleeper(client: Client, workspace: Path) -> dict[str, Any]:
    """Submit a `sleeper` task in `workspace` and return once its command and child are running."""
    submitted = await call(
        client, "submit_task", prompt="sleep", backend="command:sleeper", max_iterations=5, workspace=str(workspace)
    )
    pids_file = workspace / "pids.txt"
    with anyio.fail_after(20):
        while not pids_file.exists() or len(pids_file.read_text().split()) < 2:
            await anyio.sleep(0.05)
    return submitted


async def test_stop_kills_a_long_running_command_group_within_two_seconds(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "sleeper")
    server = create_server(build_core("ralph", ralph_settings(control_poll_seconds=0.5)))
    async with Client(server.mcp) as client:
        submitted = await _start_sleeper(client, workspace)
        leader, child = sleeper_pids(workspace)
        assert _alive(leader) and _alive(child)
        with anyio.fail_after(2):
            await call(client, "stop_task", task_id=submitted["task_id"])
            while _alive(leader) or _alive(child):
                await anyio.sleep(0.02)
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("stopped", "stopped_by_user")
    assert [item["status"] for item in iterations] == ["stopped"]


async def test_stop_of_a_running_task_returns_the_stopped_task_once_its_worker_confirms(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "sleeper")
    server = create_server(build_core("ralph", ralph_settings(control_poll_seconds=0.5)))
    async with Client(server.mcp) as client:
        submitted = await _start_sleeper(client, workspace)
        # Within the 2 s guarantee, and before stop_task's own bounded wait (3 s) could run out: the worker's
        # final write NOTIFYs, and that wakes the waiting call.
        with anyio.fail_after(2):
            stopped = await call(client, "stop_task", task_id=submitted["task_id"])
    assert (stopped["status"], stopped["completion_reason"]) == ("stopped", "stopped_by_user")
    assert stopped["finished_at"] is not None


async def test_stop_of_a_queued_task_is_immediate_and_a_finished_task_cannot_be_stopped(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    async with Client(server.mcp) as client:
        submitted = await call(client, "submit_task", prompt="x", backend="command:instant", max_iterations=1)
        stopped = await call(client, "stop_task", task_id=submitted["task_id"])
        again = await client.call_tool("stop_task", {"task_id": submitted["task_id"]})
        approved = await client.call_tool("approve_task", {"task_id": submitted["task_id"], "approved": True})
    assert (stopped["status"], stopped["completion_reason"]) == ("stopped", "stopped_by_user")
    assert not again.is_error  # stopping a stopped task is a no-op
    assert approved.is_error


async def test_approval_gate_parks_the_task_until_approved_and_rejection_ends_it(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        parked = await call(
            client,
            "submit_task",
            prompt="needs a human",
            backend="command:instant",
            completion_promise="OK",
            max_iterations=2,
            require_approval=True,
        )
        proposal = await call(
            client, "submit_task", prompt="a proposal", backend="command:instant", max_iterations=2, origin="hybrid"
        )
        # Workers are running: an unparked task completes while the parked ones stay parked.
        other = await call(
            client, "submit_task", prompt="free", backend="command:instant", completion_promise="OK", max_iterations=2
        )
        assert (await wait_for_status(client, other["task_id"]))["status"] == "completed"
        assert parked["status"] == proposal["status"] == "awaiting_approval"
        status = await call(client, "task_status", task_id=parked["task_id"])
        assert (status["status"], status["iterations_done"]) == ("awaiting_approval", 0)

        approved = await call(client, "approve_task", task_id=parked["task_id"], approved=True, note="looks fine")
        assert approved["approved"] is True
        done = await wait_for_status(client, parked["task_id"])
        rejected = await call(client, "approve_task", task_id=proposal["task_id"], approved=False, note="no")
        twice = await client.call_tool("approve_task", {"task_id": proposal["task_id"], "approved": True})
    assert (done["status"], done["completion_reason"], done["approval_note"]) == (
        "completed",
        "promise_found",
        "looks fine",
    )
    assert (rejected["status"], rejected["completion_reason"]) == ("rejected", "approval_rejected")
    assert twice.is_error


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"backend": "nope"}, "unknown backend"),
        ({"backend": "hybrid"}, "MCP_STACK_RALPH__HYBRID_URL"),
        ({"workspace": "/etc"}, "outside the configured workspace roots"),
        ({"workspace": "relative/dir"}, "absolute"),
        ({"verify_command": "no-such-binary-xyz --check"}, "not found"),
        ({"verify_command": "unbalanced 'quote"}, "cannot be parsed"),
        ({"hooks": [{"event": "pre_iteration", "command": "/no/such/hook"}]}, "not found"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"max_cost_usd": 1.0}, "backend 'command' does not report what an iteration costs"),
    ],
)
async def test_bad_submissions_are_refused_with_a_clear_tool_error(
    ralph_settings: Callable[..., StackSettings], arguments: dict[str, Any], fragment: str
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    base = {"prompt": "p", "backend": "command", "max_iterations": 2}
    async with Client(server.mcp) as client:
        result = await client.call_tool("submit_task", {**base, **arguments})
    assert result.is_error
    assert fragment in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "arguments",
    [{"max_iterations": 0}, {"max_iterations": -1}, {"max_seconds": -5.0}, {"max_cost_usd": -1.0}],
)
async def test_negative_or_zero_limits_are_rejected_by_the_schema(
    ralph_settings: Callable[..., StackSettings], arguments: dict[str, Any]
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    async with Client(server.mcp) as client:
        result = await client.call_tool("submit_task", {"prompt": "p", "backend": "command", **arguments})
    assert result.is_error


async def test_list_tasks_pages_with_a_cursor_without_gaps_or_duplicates(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    async with Client(server.mcp) as client:
        ids = {
            (await call(client, "submit_task", prompt=f"task {n}", backend="command", max_iterations=1))["task_id"]
            for n in range(7)
        }
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            arguments: dict[str, Any] = {"limit": 3}
            if cursor:
                arguments["cursor"] = cursor
            page = await call(client, "list_tasks", **arguments)
            seen += [task["id"] for task in page["tasks"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        queued = await call(client, "list_tasks", status="queued", limit=50)
        none_running = await call(client, "list_tasks", status="running")
        bad_cursor = await client.call_tool("list_tasks", {"cursor": "garbage"})
    assert pages == 3 and len(seen) == 7 and set(seen) == ids
    assert len(queued["tasks"]) == 7 and none_running["tasks"] == []
    assert bad_cursor.is_error


async def test_list_cursor_is_bound_to_the_status_filter_it_was_minted_for(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    async with Client(server.mcp) as client:
        queued = [
            (await call(client, "submit_task", prompt=f"task {n}", backend="command", max_iterations=1))["task_id"]
            for n in range(3)
        ]
        stopped = (await call(client, "submit_task", prompt="stopped", backend="command", max_iterations=1))["task_id"]
        await call(client, "stop_task", task_id=stopped)
        first = await call(client, "list_tasks", status="queued", limit=2)
        cursor = first["next_cursor"]
        assert cursor is not None
        other_status = await client.call_tool("list_tasks", {"status": "stopped", "cursor": cursor})
        no_status = await client.call_tool("list_tasks", {"cursor": cursor})
        rest = await call(client, "list_tasks", status="queued", limit=2, cursor=cursor)
        unfiltered = await call(client, "list_tasks", limit=1)
        unfiltered_cursor = unfiltered["next_cursor"]
        assert unfiltered_cursor is not None
        filtered_with_unfiltered = await client.call_tool(
            "list_tasks", {"status": "queued", "cursor": unfiltered_cursor}
        )
    assert other_status.is_error and no_status.is_error and filtered_with_unfiltered.is_error
    assert [task["id"] for task in first["tasks"] + rest["tasks"]] == list(reversed(queued))
    assert rest["next_cursor"] is None
    assert unfiltered["tasks"][0]["id"] == stopped


async def test_task_resources_and_unknown_ids(ralph_settings: Callable[..., StackSettings]) -> None:
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client, "submit_task", prompt="x", backend="command:instant", completion_promise="OK", max_iterations=3
        )
        await wait_for_status(client, submitted["task_id"])
        resource = await client.read_resource(f"ralph://tasks/{submitted['task_id']}")
        unknown_status = await client.call_tool("task_status", {"task_id": "00000000-0000-0000-0000-000000000000"})
        garbage_status = await client.call_tool("task_status", {"task_id": "not-a-uuid"})
        with pytest.raises(MCPError) as missing:
            await client.read_resource("ralph://tasks/00000000-0000-0000-0000-000000000000/iterations")
    assert '"status":"completed"' in resource.contents[0].text  # type: ignore[union-attr]
    assert unknown_status.is_error and garbage_status.is_error
    assert missing.value.error.code == INVALID_PARAMS


async def test_resource_updates_reach_listen_streams_of_the_2026_era(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    async with Client(server.mcp, mode="2026-07-28") as client:
        submitted = await call(client, "submit_task", prompt="x", backend="command:instant", max_iterations=1)
        uri = f"ralph://tasks/{submitted['task_id']}"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await call(client, "stop_task", task_id=submitted["task_id"])
            with anyio.fail_after(5):
                event = await subscription.__anext__()
    assert event == ResourceUpdated(uri=uri)


async def test_resource_updates_reach_legacy_subscribers(ralph_settings: Callable[..., StackSettings]) -> None:
    server = create_server(build_core("ralph", ralph_settings(workers=0)))
    updated: list[str] = []
    received = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            received.set()

    async with Client(server.mcp, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe
        submitted = await call(client, "submit_task", prompt="x", backend="command:instant", max_iterations=1)
        uri = f"ralph://tasks/{submitted['task_id']}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # the legacy era is what this test covers
            await client.session.subscribe_resource(uri)
        await call(client, "stop_task", task_id=submitted["task_id"])
        with anyio.fail_after(5):
            await received.wait()
    assert uri in updated


async def test_hooks_receive_the_task_on_stdin_around_each_iteration(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, programs: Path
) -> None:
    workspace = make_workspace(workspace_root, "hooks")
    logger = program_command(programs, "hook_logger")
    failing = program_command(programs, "hook_fails")
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="edit",
            backend="command:third_time",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(workspace),
            hooks=[
                {"event": "pre_iteration", "command": logger},
                {"event": "post_iteration", "command": logger},
                {"event": "post_iteration", "command": failing},  # not blocking: recorded, the loop goes on
                {"event": "on_complete", "command": logger},
            ],
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    task_id = submitted["task_id"]
    lines = (workspace / "hooks.log").read_text().splitlines()
    assert (task["status"], task["iterations_done"]) == ("completed", 3)
    assert lines == [
        f"pre_iteration 1 running {task_id}",
        f"post_iteration 1 running {task_id}",
        f"pre_iteration 2 running {task_id}",
        f"post_iteration 2 running {task_id}",
        f"pre_iteration 3 running {task_id}",
        f"post_iteration 3 running {task_id}",
        f"on_complete None completed {task_id}",
    ]
    failed = [result for result in iterations[0]["hook_results"] if not result["ok"]]
    assert [(result["exit_status"], result["blocking"]) for result in failed] == [(1, False)]
    assert iterations[-1]["hook_results"][-1]["event"] == "on_complete"


async def test_a_failing_blocking_hook_stops_the_task(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path, programs: Path
) -> None:
    workspace = make_workspace(workspace_root, "blocked")
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="edit",
            backend="command:third_time",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(workspace),
            hooks=[{"event": "pre_iteration", "command": program_command(programs, "hook_fails"), "blocking": True}],
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"]) == ("failed", "hook_blocked")
    assert "hook_fails" in task["detail"]
    assert not (workspace / "count.txt").exists()  # the agent never ran
    assert [item["status"] for item in iterations] == ["failed"]


async def test_git_checkpoint_commits_the_workspace_after_each_iteration(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "git")
    server = create_server(build_core("ralph", ralph_settings()))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="edit",
            backend="command:third_time",
            completion_promise="DONE",
            max_iterations=5,
            workspace=str(workspace),
            git_checkpoint=True,
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    # The workspace belongs to the sandbox's user (when the tests run as root): let this git read it anyway.
    git = ["git", "-c", f"safe.directory={workspace}", "-C", str(workspace)]
    log = await anyio.run_process([*git, "log", "--format=%H %s"])
    commits = [line.split(" ", 1) for line in log.stdout.decode().splitlines()]
    assert task["status"] == "completed"
    assert [subject for _, subject in commits] == [
        f"ralph: task {submitted['task_id']} iteration {n} (ok)" for n in (3, 2, 1)
    ]
    assert [item["checkpoint_commit"] for item in iterations] == [sha for sha, _ in reversed(commits)]
    shown = await anyio.run_process([*git, "show", f"{commits[1][0]}:count.txt"])
    assert shown.stdout.decode() == "2"


async def test_a_worker_that_loses_its_lease_kills_its_command_and_stops_writing(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "stolen")
    settings = ralph_settings(lease_seconds=1.5)
    assert settings.postgres.dsn is not None
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        submitted = await _start_sleeper(client, workspace)
        leader, child = sleeper_pids(workspace)
        connection = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            # Another worker took the task over (as if ours had stalled past its lease).
            await connection.execute(
                "UPDATE ralph_tasks SET lease_owner = 'thief', lease_expires_at = now() + interval '1 hour'"
            )
            with anyio.fail_after(5):
                while _alive(leader) or _alive(child):
                    await anyio.sleep(0.02)
            task = await call(client, "task_status", task_id=submitted["task_id"])
            iterations = await read_iterations(client, submitted["task_id"])
            owner = await connection.fetchval("SELECT lease_owner FROM ralph_tasks")
        finally:
            await connection.close()
    assert (task["status"], owner) == ("running", "thief")
    assert [item["status"] for item in iterations] == ["running"]  # left for the new owner to settle
