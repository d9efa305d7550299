"""The Claude Desktop snippet from `mcp-stack client-config` starts a working server: launch it, list its tools."""

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from mcp_servers.shared.config import StackSettings

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_the_generated_claude_desktop_stdio_command_serves_aidb(
    stack_settings: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack_settings.postgres.dsn is not None
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(stack_settings.postgres.dsn.get_secret_value(), encoding="utf-8")
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "MCP_STACK_DATA_DIR": str(stack_settings.data_dir),
        "MCP_STACK_POSTGRES__DSN_FILE": str(dsn_file),
    }
    result = await anyio.run_process(
        [sys.executable, "-m", "mcp_servers.cli", "client-config", "claude-desktop", "--server", "aidb"],
        env=environment,
        stdin=subprocess.DEVNULL,
    )
    snippet = json.loads(result.stdout)
    entry = snippet["mcpServers"]["aidb"]
    assert Path(entry["command"]).is_absolute()
    assert entry["env"]["MCP_STACK_POSTGRES__DSN_FILE"] == str(dsn_file)
    assert stack_settings.postgres.dsn.get_secret_value() not in result.stdout.decode()

    # Exactly what Claude Desktop does with the entry: run `command args` with `env`, speak MCP over stdio.
    parameters = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"])
    with anyio.fail_after(120):
        async with Client(parameters, mode="legacy") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
    assert {"store_document", "search", "get_document"} <= tools
