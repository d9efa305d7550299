"""Hybrid as real processes: `mcp-hybrid` over stdio routes to an LLM; `mcp-stack serve hybrid` over HTTP runs the
learning pipeline on telemetry written by another process and reports it on /learning/stats."""

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client, StdioServerParameters

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.telemetry import TelemetryWriter
from tests.integration.hybrid.conftest import ScriptedLlm, scripted_llm
from tests.support import VENV_BIN, free_port, wait_http_ok, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLlm]:
    async with scripted_llm("local") as server:
        yield server


def hybrid_env(settings: StackSettings, llm_url: str, **extra: str) -> dict[str, str]:
    assert settings.postgres.dsn is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    backends = [{"name": "local", "kind": "local", "base_url": llm_url, "model": "m", "timeout_seconds": 10}]
    return env | {
        "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
        "MCP_STACK_HYBRID__BACKENDS": json.dumps(backends),
        **extra,
    }


async def test_console_script_routes_a_query_over_stdio(stack_settings: StackSettings, llm: ScriptedLlm) -> None:
    params = StdioServerParameters(command=str(VENV_BIN / "mcp-hybrid"), env=hybrid_env(stack_settings, llm.url))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("route_query", {"prompt": "hello over stdio"})
    assert not result.is_error
    assert result.structured_content is not None and result.structured_content["backend"] == "local"
    assert llm.requests[0]["messages"][-1]["content"] == "hello over stdio"


async def test_http_server_consumes_telemetry_and_reports_learning_stats(
    stack_settings: StackSettings, llm: ScriptedLlm
) -> None:
    port = free_port()
    env = hybrid_env(
        stack_settings,
        llm.url,
        MCP_STACK_HTTP__HYBRID_PORT=str(port),
        MCP_STACK_HYBRID__PIPELINE_POLL_SECONDS="0.05",
    )
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        token = (await KeyStore(database).create("e2e", ["read"])).token
    writer = TelemetryWriter(stack_settings.telemetry_path, 1024 * 1024, source="ralph")
    for n in range(250):
        await writer.emit("interaction", query=f"question {n}", response=f"answer {n}", outcome="success")
    process = subprocess.Popen(
        [str(VENV_BIN / "mcp-stack"), "serve", "hybrid", "--transport", "http"], env=env, stdin=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(f"{url}/health", timeout=120, process=process)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:

            async def consumed() -> bool:
                response = await client.get(f"{url}/learning/stats")
                return response.status_code == 200 and response.json()["pipeline"]["events_processed"] == 250

            await wait_until(consumed, timeout=60, interval=0.1)
            stats = (await client.get(f"{url}/learning/stats")).json()
            metrics = (await client.get(f"{url}/metrics")).text
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(process.wait, 20)
    assert process.returncode == 0
    assert stats["pipeline"]["running"] and stats["pipeline"]["lag_bytes"] == 0
    assert stats["training_examples"] == 250 and stats["dedup_events"] == 250
    assert "mcpstack_learning_backlog_bytes 0.0" in metrics
