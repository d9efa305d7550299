"""`mcp-ralph` (the console script) serves Ralph over stdio, workers included."""

import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from mcp_servers.shared.config import StackSettings
from tests.integration.ralph.ralph_support import PYTHON, PYTHON_PREFIX
from tests.support import VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_console_script_runs_a_task_over_stdio(stack_settings: StackSettings, tmp_path: Path) -> None:
    assert stack_settings.postgres.dsn is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {
        "MCP_STACK_POSTGRES__DSN": stack_settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(stack_settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
        "MCP_STACK_RALPH__CONTROL_POLL_SECONDS": "0.1",
        "MCP_STACK_RALPH__COMMAND_TEMPLATES": json.dumps(
            {"default": [PYTHON, "-c", "print('<promise>STDIO</promise>')"]}
        ),
        "MCP_STACK_RALPH__SANDBOX_RO_BINDS": json.dumps([PYTHON_PREFIX]),
    }
    params = StdioServerParameters(command=str(VENV_BIN / "mcp-ralph"), env=env)
    async with Client(params, mode="legacy") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        submitted = await client.call_tool(
            "submit_task", {"prompt": "p", "backend": "command", "completion_promise": "STDIO", "max_iterations": 2}
        )
        assert isinstance(submitted.structured_content, dict)
        task_id = submitted.structured_content["task_id"]
        with anyio.fail_after(30):
            while True:
                status = (await client.call_tool("task_status", {"task_id": task_id})).structured_content
                assert isinstance(status, dict)
                if status["status"] != "queued" and status["status"] != "running":
                    break
                await anyio.sleep(0.05)
    assert "submit_task" in tools
    assert (status["status"], status["completion_reason"]) == ("completed", "promise_found")
