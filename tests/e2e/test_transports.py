"""Real processes: `mcp-stack serve aidb` over stdio, Streamable HTTP (both eras) and SSE; the Inspector CLI."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.support import VENV_BIN, free_port, http_client, wait_http_ok
from tests.tools import inspector_command

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@dataclass(frozen=True)
class Served:
    url: str
    token: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def stack_env(settings: StackSettings, port: int | None = None) -> dict[str, str]:
    assert settings.postgres.dsn is not None
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MCP_STACK_") or key == "MCP_STACK_TEST_DSN"
    }
    env |= {
        "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    if port is not None:
        env["MCP_STACK_HTTP__AIDB_PORT"] = str(port)
    return env


async def issue_key(settings: StackSettings, scopes: list[str]) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("e2e", scopes)).token


@pytest.fixture
async def served(stack_settings: StackSettings) -> AsyncIterator[Served]:
    port = free_port()
    env = stack_env(stack_settings, port)
    token = await issue_key(stack_settings, ["read"])
    process = subprocess.Popen(
        [str(VENV_BIN / "mcp-stack"), "serve", "aidb", "--transport", "http"], env=env, stdin=subprocess.DEVNULL
    )
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=120, process=process)
        yield Served(f"http://127.0.0.1:{port}", token, env, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(process.wait, 20)


def stats_of(result: object) -> dict[str, object]:
    structured = getattr(result, "structured_content", None)
    assert isinstance(structured, dict), result
    return structured


async def test_stdio_lists_and_calls_a_tool(stack_settings: StackSettings) -> None:
    params = StdioServerParameters(
        command=str(VENV_BIN / "mcp-stack"),
        args=["serve", "aidb", "--transport", "stdio"],
        env=stack_env(stack_settings),
    )
    async with Client(params, mode="legacy") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        stats = stats_of(await client.call_tool("stats", {}))
    assert "stats" in tools
    assert stats["dimension"] == 384


async def test_console_script_serves_stdio(stack_settings: StackSettings) -> None:
    params = StdioServerParameters(command=str(VENV_BIN / "mcp-aidb"), env=stack_env(stack_settings))
    async with Client(params, mode="legacy") as client:
        assert "stats" in {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize(
    ("mode", "era"),
    [
        ("legacy", LATEST_HANDSHAKE_VERSION),  # the version the server answered initialize with
        ("2026-07-28", "2026-07-28"),
        ("auto", "2026-07-28"),  # the client adopts what the server's server/discover offers
    ],
)
async def test_streamable_http_in_both_eras(served: Served, mode: str, era: str) -> None:
    async with http_client(served.url, served.token, mode=mode) as client:
        stats = stats_of(await client.call_tool("stats", {}))
        used = client.protocol_version
    assert used == era
    assert stats["dimension"] == 384


async def test_legacy_sse_transport(served: Served) -> None:
    transport = sse_client(f"{served.url}/sse", headers={"Authorization": f"Bearer {served.token}"})
    async with Client(transport, mode="legacy") as client:
        assert stats_of(await client.call_tool("stats", {}))["dimension"] == 384


async def test_sigterm_stops_the_server_cleanly(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    code = await anyio.to_thread.run_sync(served.process.wait, 20)
    assert code == 0


def run_inspector(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*inspector_command(), *args], capture_output=True, text=True, timeout=120, check=False)


async def test_inspector_cli_over_stdio(stack_settings: StackSettings, tmp_path: Path) -> None:
    env = stack_env(stack_settings)
    target = [str(VENV_BIN / "mcp-stack"), "serve", "aidb", "--transport", "stdio"]
    env_args = [arg for key, value in env.items() if key.startswith("MCP_STACK_") for arg in ("-e", f"{key}={value}")]
    listed = await anyio.to_thread.run_sync(run_inspector, [*env_args, *target, "--method", "tools/list"])
    called = await anyio.to_thread.run_sync(
        run_inspector, [*env_args, *target, "--method", "tools/call", "--tool-name", "stats"]
    )
    assert listed.returncode == 0, listed.stderr
    assert "stats" in {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"]["dimension"] == 384


@pytest.mark.parametrize("era", [[], ["--protocol-era", "modern"]])
async def test_inspector_cli_over_http(served: Served, era: list[str]) -> None:
    auth = ["--header", f"Authorization: Bearer {served.token}"]
    listed = await anyio.to_thread.run_sync(run_inspector, [f"{served.url}/mcp", *era, "--method", "tools/list", *auth])
    called = await anyio.to_thread.run_sync(
        run_inspector, [f"{served.url}/mcp", *era, "--method", "tools/call", "--tool-name", "stats", *auth]
    )
    assert listed.returncode == 0, listed.stderr
    assert "stats" in {tool["name"] for tool in json.loads(listed.stdout)["tools"]}
    assert called.returncode == 0, called.stderr


def test_bad_configuration_exits_with_one_line_naming_the_variable() -> None:
    env = {**os.environ, "MCP_STACK_POSTGRES__POOL_MAX_SIZE": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_servers.cli", "serve", "aidb", "--transport", "stdio"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "MCP_STACK_POSTGRES__POOL_MAX_SIZE" in result.stderr
    assert "Traceback" not in result.stderr
