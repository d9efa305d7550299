"""Restart PostgreSQL under load: the pool recovers, the breaker opens and closes, no call hangs past its timeout.

The test owns an embedded PostgreSQL (`EmbeddedPostgres(data_dir)`); Ralph (no workers) serves `list_tasks` to
three in-process clients in a loop. PostgreSQL is stopped while they call, then started again.
"""

import contextlib
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_servers.cli import build_server
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.postgres.embedded import EmbeddedPostgres

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CLIENTS = 3
COMMAND_TIMEOUT_SECONDS = 3.0
CONNECT_TIMEOUT_SECONDS = 2.0
# A call may wait for a connection, then for the statement: both bounded, plus slack for a loaded machine.
CALL_BOUND_SECONDS = COMMAND_TIMEOUT_SECONDS + CONNECT_TIMEOUT_SECONDS + 5.0


async def test_postgres_restart_under_load_opens_then_closes_the_breaker(data_dir: Path, tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(data_dir)
    dsn = await postgres.start()
    settings = load_settings(
        data_dir=tmp_path / "ralph",
        postgres={
            "dsn": dsn,
            "command_timeout_seconds": COMMAND_TIMEOUT_SECONDS,
            "connect_timeout_seconds": CONNECT_TIMEOUT_SECONDS,
        },
        breaker={"failure_threshold": 3, "open_seconds": 0.5},
        rate_limit={"enabled": False},
        ralph={"workers": 0},
        observability={"log_level": "ERROR"},
    )
    server = build_server("ralph", settings)
    outcomes: list[tuple[float, str]] = []
    states: set[str] = set()
    slowest = 0.0
    stop = anyio.Event()

    async def caller(client: Client) -> None:
        nonlocal slowest
        while not stop.is_set():
            began = time.perf_counter()
            with anyio.fail_after(CALL_BOUND_SECONDS):  # a hang fails the test here
                try:
                    result = await client.call_tool("list_tasks", {"limit": 5})
                    outcome = "error" if result.is_error else "ok"
                except MCPError:
                    outcome = "protocol_error"
            slowest = max(slowest, time.perf_counter() - began)
            outcomes.append((time.monotonic(), outcome))
            await anyio.sleep(0.02)

    async def watch() -> None:
        while not stop.is_set():
            states.add(server.core.breakers.snapshot().get("postgres", "unknown"))
            await anyio.sleep(0.01)

    def oks_since(moment: float) -> int:
        return sum(1 for at, outcome in outcomes if at >= moment and outcome == "ok")

    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(server.mcp)) for _ in range(CLIENTS)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                for client in clients:
                    tg.start_soon(caller, client)
                with anyio.fail_after(30):
                    while oks_since(0) < 20:
                        await anyio.sleep(0.05)
                await postgres.stop()
                with anyio.fail_after(60):
                    while "open" not in states:
                        await anyio.sleep(0.05)
                down_errors = sum(1 for _, outcome in outcomes if outcome != "ok")
                await postgres.start()
                restarted = time.monotonic()
                with anyio.fail_after(60):
                    while oks_since(restarted) < 20 or server.core.breakers.snapshot().get("postgres") != "closed":
                        await anyio.sleep(0.05)
                stop.set()
            ready, report = await server.readiness()
    finally:
        with anyio.CancelScope(shield=True):
            await postgres.stop()
    assert down_errors >= 1
    assert {"closed", "open"} <= states, states
    assert all(outcome in ("ok", "error") for _, outcome in outcomes), "a PostgreSQL outage became a protocol error"
    assert ready, report
    assert slowest <= CALL_BOUND_SECONDS
    crashes = [
        line
        for line in server.core.metrics.render().decode().splitlines()
        if line.startswith("mcpstack_tool_calls_total{") and 'outcome="crash"' in line and not line.endswith(" 0.0")
    ]
    assert not crashes, crashes
