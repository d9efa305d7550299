"""Tool discovery: register MCP servers over Streamable HTTP and stdio, index their tools, find them by task."""

import shlex
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.aidb.conftest import structured
from tests.integration.aidb.test_aidb_tools import TOOLS as OWN_TOOLS
from tests.support import serve_app, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STDIO_SERVER = '''
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("calculator")


@mcp.tool()
def add_numbers(a: int, b: int) -> int:
    """Add two integers and return their sum."""
    return a + b


@mcp.tool()
def convert_currency(amount: float, currency: str) -> float:
    """Convert an amount of money into another currency at today's exchange rate."""
    return amount


mcp.run()
'''


def weather_server() -> MCPServer:
    """A small HTTP MCP server with two tools."""
    server = MCPServer("weather")

    @server.tool()
    def get_forecast(city: str, days: int = 3) -> str:
        """Weather forecast (temperature, rain, wind) for a city for the next days."""
        return f"{city}: sunny"

    @server.tool()
    def list_stations(country: str) -> list[str]:
        """Names of the meteorological measurement stations in a country."""
        return []

    return server


async def test_registered_servers_tools_are_found_by_task(aidb_server: StackServer[AidbDeps], tmp_path: Path) -> None:
    script = tmp_path / "calculator_server.py"
    script.write_text(STDIO_SERVER, encoding="utf-8")
    weather = weather_server()
    async with serve_app(weather.streamable_http_app()) as url, Client(aidb_server.mcp) as client:
        http = structured(await client.call_tool("register_mcp_server", {"name": "weather", "url": f"{url}/mcp"}))
        assert http == {"name": "weather", "transport": "http", "tools": ["get_forecast", "list_stations"]}
        command = shlex.join([sys.executable, str(script)])
        stdio = structured(await client.call_tool("register_mcp_server", {"name": "calc", "command": command}))
        assert stdio["transport"] == "stdio" and sorted(stdio["tools"]) == ["add_numbers", "convert_currency"]

        found = structured(
            await client.call_tool("find_tools", {"query": "will it rain tomorrow in Paris", "limit": 2})
        )
        best = found["tools"][0]
        assert (best["server"], best["name"]) == ("weather", "get_forecast")
        assert best["input_schema"]["properties"]["city"]["type"] == "string"
        money = structured(await client.call_tool("find_tools", {"query": "exchange euros to dollars", "limit": 1}))
        assert [(t["server"], t["name"]) for t in money["tools"]] == [("calc", "convert_currency")]
        only_calc = structured(
            await client.call_tool("find_tools", {"query": "weather forecast", "server_name": "calc", "limit": 5})
        )
        assert {t["server"] for t in only_calc["tools"]} == {"calc"}

        # Re-indexing by name alone keeps the tools, and reindex rebuilds them from PostgreSQL.
        again = structured(await client.call_tool("register_mcp_server", {"name": "weather"}))
        assert again["tools"] == ["get_forecast", "list_stations"]
        own = len(OWN_TOOLS)  # AIDB's own tools are indexed too (server "aidb")
        assert structured(await client.call_tool("reindex", {}))["tools"] == 4 + own
        after = structured(await client.call_tool("find_tools", {"query": "rain forecast for a city", "limit": 1}))
        assert after["tools"][0]["name"] == "get_forecast"
        assert structured(await client.call_tool("stats", {}))["tools_indexed"] == 4 + own


async def test_registering_an_unreachable_or_invalid_server_is_a_tool_error(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        down = await client.call_tool("register_mcp_server", {"name": "down", "url": "http://127.0.0.1:9/mcp"})
        assert down.is_error and "unavailable" in down.content[0].text  # type: ignore[union-attr]
        both = await client.call_tool("register_mcp_server", {"name": "x", "url": "http://a/mcp", "command": "ls"})
        assert both.is_error and "either url" in both.content[0].text  # type: ignore[union-attr]
        scheme = await client.call_tool("register_mcp_server", {"name": "x", "url": "file:///etc/passwd"})
        assert scheme.is_error and "http:// or https://" in scheme.content[0].text  # type: ignore[union-attr]
        unknown = await client.call_tool("register_mcp_server", {"name": "never-registered"})
        assert unknown.is_error and "no registered server" in unknown.content[0].text  # type: ignore[union-attr]
        # Nothing was registered: only AIDB's own tools are found.
        assert {
            t["server"] for t in structured(await client.call_tool("find_tools", {"query": "anything"}))["tools"]
        } == {"aidb"}


async def test_configured_peer_servers_are_registered_at_start_up(aidb_settings: StackSettings) -> None:
    weather = weather_server()
    async with serve_app(weather.streamable_http_app()) as url:
        settings = aidb_settings.model_copy(
            update={"aidb": aidb_settings.aidb.model_copy(update={"register_servers": {"weather": f"{url}/mcp"}})}
        )
        server = create_server(build_core("aidb", settings))
        async with Client(server.mcp) as client:

            async def registered() -> bool:
                args = {"query": "weather forecast", "server_name": "weather"}
                return bool(structured(await client.call_tool("find_tools", args))["tools"])

            await wait_until(registered, timeout=30)
            found = structured(await client.call_tool("find_tools", {"query": "weather forecast", "limit": 1}))
            assert found["tools"][0]["name"] == "get_forecast"
