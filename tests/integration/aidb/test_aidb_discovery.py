"""Tool discovery: register MCP servers over Streamable HTTP (allowed hosts only) and stdio (operator configuration
only), index their tools, find them by task; the peer key goes only to the configured peers."""

import shlex
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import SecretStr

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.aidb.conftest import structured
from tests.integration.aidb.test_aidb_tools import TOOLS as OWN_TOOLS
from tests.support import recording_listener, serve_app, wait_until

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


def with_aidb(settings: StackSettings, **changes: object) -> StackSettings:
    return settings.model_copy(update={"aidb": settings.aidb.model_copy(update=changes)})


def calculator(tmp_path: Path) -> str:
    """The command line of a stdio MCP server (operator configuration, never a tool argument)."""
    script = tmp_path / "calculator_server.py"
    script.write_text(STDIO_SERVER, encoding="utf-8")
    return shlex.join([sys.executable, str(script)])


async def test_registered_servers_tools_are_found_by_task(aidb_settings: StackSettings, tmp_path: Path) -> None:
    settings = with_aidb(aidb_settings, register_servers={"calc": calculator(tmp_path)})
    aidb_server = create_server(build_core("aidb", settings))
    weather = weather_server()
    async with serve_app(weather.streamable_http_app()) as url, Client(aidb_server.mcp) as client:

        async def operator_server_indexed() -> bool:
            return bool(structured(await client.call_tool("stats", {}))["tools_indexed"])

        # The operator's stdio server is indexed at start-up; registering it by name re-indexes it.
        await wait_until(operator_server_indexed, timeout=30)
        stdio = structured(await client.call_tool("register_mcp_server", {"name": "calc"}))
        assert stdio["transport"] == "stdio" and sorted(stdio["tools"]) == ["add_numbers", "convert_currency"]
        http = structured(await client.call_tool("register_mcp_server", {"name": "weather", "url": f"{url}/mcp"}))
        assert http == {"name": "weather", "transport": "http", "tools": ["get_forecast", "list_stations"]}

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

        # An operator's stdio name cannot be pointed at a URL instead.
        moved = await client.call_tool("register_mcp_server", {"name": "calc", "url": f"{url}/mcp"})
        assert moved.is_error and "register it by name only" in moved.content[0].text  # type: ignore[union-attr]


async def test_registering_an_unreachable_or_invalid_server_is_a_tool_error(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        down = await client.call_tool("register_mcp_server", {"name": "down", "url": "http://127.0.0.1:9/mcp"})
        assert down.is_error and "unavailable" in down.content[0].text  # type: ignore[union-attr]
        scheme = await client.call_tool("register_mcp_server", {"name": "x", "url": "file:///etc/passwd"})
        assert scheme.is_error and "http:// or https://" in scheme.content[0].text  # type: ignore[union-attr]
        unknown = await client.call_tool("register_mcp_server", {"name": "never-registered"})
        assert unknown.is_error and "no registered server" in unknown.content[0].text  # type: ignore[union-attr]
        # Nothing was registered: only AIDB's own tools are found.
        assert {
            t["server"] for t in structured(await client.call_tool("find_tools", {"query": "anything"}))["tools"]
        } == {"aidb"}


async def test_register_mcp_server_takes_no_command_line(aidb_server: StackServer[AidbDeps], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    async with Client(aidb_server.mcp) as client:
        schema = next(t for t in (await client.list_tools()).tools if t.name == "register_mcp_server").input_schema
        assert set(schema["properties"]) == {"name", "url"}
        with pytest.raises(MCPError) as refused:
            await client.call_tool("register_mcp_server", {"name": "x", "command": f"touch {marker}"})
        assert refused.value.code == INVALID_PARAMS
    assert not marker.exists()


REFUSED_URLS = (
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/mcp",
    "http://[::ffff:169.254.169.254]/mcp",
    "http://2130706433/mcp",  # 127.0.0.1 to the resolver; a name, not a listed host, here
    "http://metadata.google.internal/mcp",
    "http://127.0.0.1:notaport/mcp",
)


async def test_a_url_outside_the_allow_list_is_refused_naming_the_setting(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        for url in REFUSED_URLS:
            refused = await client.call_tool("register_mcp_server", {"name": "x", "url": url})
            assert refused.is_error and "aidb.allowed_peer_hosts" in refused.content[0].text, url  # type: ignore[union-attr]


async def test_a_refused_host_is_never_contacted(aidb_settings: StackSettings) -> None:
    # Loopback addresses are off this list: the listener stands for any host an admin must not reach.
    settings = with_aidb(aidb_settings, allowed_peer_hosts=["localhost"])
    aidb_server = create_server(build_core("aidb", settings))
    async with recording_listener() as (url, seen), Client(aidb_server.mcp) as client:
        refused = await client.call_tool("register_mcp_server", {"name": "x", "url": f"{url}/mcp"})
        assert refused.is_error and "aidb.allowed_peer_hosts" in refused.content[0].text  # type: ignore[union-attr]
    assert seen == []


async def test_the_peer_key_goes_only_to_the_configured_peer(aidb_settings: StackSettings) -> None:
    async with recording_listener() as (peer_url, to_peer), recording_listener() as (other_url, to_other):
        settings = with_aidb(
            aidb_settings,
            register_servers={"hybrid": f"{peer_url}/mcp"},
            peer_api_keys={"hybrid": SecretStr("mcps_peer_secret")},
            peer_api_key=SecretStr("mcps_default_secret"),
        )
        aidb_server = create_server(build_core("aidb", settings))
        async with Client(aidb_server.mcp) as client:
            # An allowed loopback URL that is not a configured peer gets no key at all.
            other = await client.call_tool("register_mcp_server", {"name": "other", "url": f"{other_url}/mcp"})
            assert other.is_error
            # The configured peer gets its own key (at start-up, and when re-registered by name).
            await client.call_tool("register_mcp_server", {"name": "hybrid"})

            async def peer_was_called() -> bool:
                return bool(to_peer)

            await wait_until(peer_was_called, timeout=10)
    assert to_other and all("authorization" not in request for request in to_other)
    assert {request.get("authorization") for request in to_peer} == {"Bearer mcps_peer_secret"}


async def test_a_server_registered_with_a_command_line_earlier_is_not_run_again(
    aidb_server: StackServer[AidbDeps], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    async with Client(aidb_server.mcp) as client:
        # What the removed `command` parameter stored before.
        await aidb_server.database.execute(
            "INSERT INTO aidb_mcp_servers (name, command) VALUES ('legacy', $1)", ["touch", str(marker)]
        )
        again = await client.call_tool("register_mcp_server", {"name": "legacy"})
        assert again.is_error and "aidb.register_servers" in again.content[0].text  # type: ignore[union-attr]
    assert not marker.exists()


async def test_configured_peer_servers_are_registered_at_start_up(aidb_settings: StackSettings) -> None:
    weather = weather_server()
    async with serve_app(weather.streamable_http_app()) as url:
        settings = with_aidb(aidb_settings, register_servers={"weather": f"{url}/mcp"})
        server = create_server(build_core("aidb", settings))
        async with Client(server.mcp) as client:

            async def registered() -> bool:
                args = {"query": "weather forecast", "server_name": "weather"}
                return bool(structured(await client.call_tool("find_tools", args))["tools"])

            await wait_until(registered, timeout=30)
            found = structured(await client.call_tool("find_tools", {"query": "weather forecast", "limit": 1}))
            assert found["tools"][0]["name"] == "get_forecast"
