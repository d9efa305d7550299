"""Tool descriptions reach the model without the docstrings' source indentation, on every server."""

from pathlib import Path

import anyio
import pytest

from mcp_servers.cli import SERVERS
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_every_tool_description_is_dedented(name: str, tmp_path: Path) -> None:
    server = SERVERS[name](build_core(name, StackSettings(data_dir=tmp_path)))  # type: ignore[arg-type]
    tools = anyio.run(server.mcp.list_tools)
    assert tools
    multi_line = 0
    for tool in tools:
        description = tool.description or ""
        assert description and description == description.strip(), tool.name
        lines = description.splitlines()
        multi_line += len(lines) > 1
        assert not [line for line in lines if line[:1].isspace()], tool.name
    assert multi_line  # the check saw continuation lines, where docstring indentation used to be
