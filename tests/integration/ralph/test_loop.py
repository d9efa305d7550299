"""Ralph's loop over real MCP (in-process client), with small real programs as the command backend."""

from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.ralph.conftest import call, make_workspace, read_iterations, wait_for_status

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
    assert (workspace / "count.txt").read_text() == "3"
