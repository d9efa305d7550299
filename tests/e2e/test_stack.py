"""The stack as an operator runs it: `mcp-stack up` on embedded defaults, shared Redis budgets, breakers."""

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import httpx
import pytest
from mcp import Client, MCPError
from pydantic import BaseModel, Field

from mcp_servers.ops.supervisor import UP_ORDER
from mcp_servers.shared.annotations import READ_ONLY
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.harness import Core, ReadinessCheck, StackServer, build_core
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from mcp_servers.shared.postgres.embedded import EmbeddedPostgres
from mcp_servers.shared.postgres.pool import Database
from tests.e2e.test_transports import issue_key, stack_env
from tests.support import VENV_BIN, free_port, http_client, wait_http_ok, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ADMIN_KEY = re.compile(r"^\s+(mcps_[0-9a-f]+_\S+)$")


async def test_up_runs_every_server_on_embedded_defaults(data_dir: Path) -> None:
    names = list(UP_ORDER)
    ports = {name: free_port() for name in names}
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port) for name, port in ports.items()}
    env |= {"MCP_STACK_DATA_DIR": str(data_dir), "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING"}
    process = await anyio.open_process([str(VENV_BIN / "mcp-stack"), "up"], env=env, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        banner = ""
        token = None
        with anyio.fail_after(240):
            async for chunk in process.stdout:
                banner += chunk.decode()
                token = next((m.group(1) for line in banner.splitlines() if (m := ADMIN_KEY.match(line))), None)
                if token is not None:
                    break
        assert token is not None, banner
        async with httpx.AsyncClient(timeout=30) as client:
            for name, port in ports.items():
                url = f"http://127.0.0.1:{port}"
                assert url in banner
                assert (await client.get(f"{url}/health")).json()["status"] == "ok"
                ready = await client.get(f"{url}/ready", headers={"Authorization": f"Bearer {token}"})
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["postgres"] == "ok"
                if name == "aidb":
                    assert ready.json()["checks"] == {"embedder": "ok", "postgres": "ok", "vectors": "ok"}
        if {"aidb", "ralph"} <= set(ports):
            # AIDB indexed the tools of the other servers `up` started (their peer key and URLs came from `up`).
            async with http_client(f"http://127.0.0.1:{ports['aidb']}", token) as aidb:

                async def ralph_tools_indexed() -> bool:
                    found = await aidb.call_tool("find_tools", {"query": "submit a task to the agent loop"})
                    tools = (found.structured_content or {}).get("tools", [])
                    return any(tool["name"] == "submit_task" for tool in tools)

                await wait_until(ralph_tools_indexed, timeout=60, interval=1)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await process.wait() == 0
        assert not await EmbeddedPostgres(data_dir).is_running()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_processes_share_one_redis_budget(stack_settings: StackSettings) -> None:
    token = await issue_key(stack_settings, ["read"])
    ports = [free_port(), free_port()]
    processes = []
    try:
        for index, port in enumerate(ports):
            # Each replica owns its embedded vector store (Qdrant Edge is single-process); they share PostgreSQL.
            env = stack_env(stack_settings, port) | {
                "MCP_STACK_DATA_DIR": str(stack_settings.data_dir / f"replica-{index}"),
                "MCP_STACK_RATE_LIMIT__REDIS_URL": "redis://127.0.0.1:6379/0",
                "MCP_STACK_RATE_LIMIT__CALLS_PER_MINUTE": "1",
                "MCP_STACK_RATE_LIMIT__BURST": "3",
            }
            processes.append(
                subprocess.Popen(
                    [str(VENV_BIN / "mcp-stack"), "serve", "aidb", "--transport", "http"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
            )
        for port, process in zip(ports, processes, strict=True):
            await wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=120, process=process)
        first, second = (f"http://127.0.0.1:{port}" for port in ports)
        async with http_client(first, token) as a, http_client(second, token) as b:
            assert not (await a.call_tool("stats", {})).is_error
            assert not (await b.call_tool("stats", {})).is_error
            assert not (await a.call_tool("stats", {})).is_error
            with pytest.raises(MCPError) as limited:
                await b.call_tool("stats", {})
        assert limited.value.code == RATE_LIMITED
        assert limited.value.data["retry_after_seconds"] > 0
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            await anyio.to_thread.run_sync(process.wait, 20)


class Now(BaseModel):
    now: str


@dataclass(frozen=True)
class DbDeps:
    database: Database

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}


@contextlib.asynccontextmanager
async def open_db_deps(core: Core, database: Database) -> AsyncIterator[DbDeps]:
    yield DbDeps(database)


def build_db_server(settings: StackSettings) -> StackServer[DbDeps]:
    server = StackServer(build_core("aidb", settings), instructions="breaker test", open_deps=open_db_deps)

    @server.tool("now", annotations=READ_ONLY)
    async def now(label: Annotated[str, Field(max_length=10)] = "x") -> Now:
        """Ask PostgreSQL for the time."""
        return Now(now=str(await server.database.fetchval("SELECT now()::text")))

    return server


async def test_breaker_opens_when_postgres_stops_and_closes_after_recovery(data_dir: Path, tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(data_dir)
    dsn = await postgres.start()
    settings = load_settings(
        data_dir=tmp_path / "data",
        postgres={"dsn": dsn, "pool_min_size": 0, "command_timeout_seconds": 5, "connect_timeout_seconds": 2},
        breaker={"failure_threshold": 2, "open_seconds": 1.0, "half_open_probes": 1},
    )
    server = build_db_server(settings)
    try:
        async with Client(server.mcp) as client:
            assert not (await client.call_tool("now", {})).is_error
            await postgres.stop()
            failures = [await client.call_tool("now", {}) for _ in range(3)]
            assert all(result.is_error for result in failures)
            assert "retry in" in failures[-1].content[0].text  # type: ignore[union-attr]
            assert server.core.breakers.snapshot()["postgres"] == "open"
            _, report = await server.readiness()
            assert report["breakers"]["postgres"] in ("open", "half_open")
            assert report["checks"]["postgres"] != "ok"

            await postgres.start()

            async def half_open() -> bool:
                return server.core.breakers.snapshot()["postgres"] == "half_open"

            await wait_until(half_open, timeout=10)

            async def recovered() -> bool:
                return not (await client.call_tool("now", {})).is_error

            await wait_until(recovered, timeout=30, interval=0.2)
            assert server.core.breakers.snapshot()["postgres"] == "closed"
            metrics = server.core.metrics.render().decode()
            assert 'mcpstack_breaker_state{dependency="postgres",mcpstack_breaker_state="closed"} 1.0' in metrics
    finally:
        with anyio.CancelScope(shield=True):
            await postgres.stop()
