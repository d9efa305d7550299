"""Fuzz every tool of every MCP server in-process with arguments drawn from its own input schema plus hostile values.

PER_TOOL calls per tool (21 fuzzed tools x 480 = 10,080 calls per run). Each call must end as a result, a tool
error or an `INVALID_PARAMS` protocol error; never a crash (the crash outcome of `mcpstack_tool_calls_total` stays
0), never an internal detail in a message (traceback, SQL, driver names, server paths) that the arguments did not
carry. The server is ready afterwards. Fresh database per server; Ralph runs no worker (queued tasks never start a
command); AIDB's ingest roots and Ralph's workspace roots are temporary directories. Skipped:
`register_mcp_server` (it dials the given URL on loopback: whatever listens there).
"""

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from mcp_servers.cli import build_server
from mcp_servers.shared.config import StackSettings
from tests.integration.hardening.schema_strategies import arguments

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PER_TOOL = 480
SKIPPED = {"register_mcp_server": "connects to the given URL (any loopback port)"}
SERVER_DEADLINE_SECONDS = 300
MAX_ROUNDS = 30
# Text that betrays internals when it appears in a message although the caller never sent it.
LEAKS = (
    "Traceback",
    'File "',
    "site-packages",
    "/work/",
    "/tmp/",
    "asyncpg",
    "psycopg",
    "sqlstate",
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "postgresql://",
    "redis://",
    "mcp_servers.",
    "Error executing tool {name}\n",
)


def fuzz_settings(settings: StackSettings, root: Path) -> StackSettings:
    ingest = root / "ingest"
    workspaces = root / "workspaces"
    for directory in (ingest, workspaces):
        directory.mkdir(parents=True, exist_ok=True)
    (ingest / "notes.md").write_text("# Notes\nHypothesis drew this file.\n", encoding="utf-8")
    return settings.model_copy(
        update={
            "data_dir": root / "data",
            "rate_limit": settings.rate_limit.model_copy(update={"enabled": False}),
            "aidb": settings.aidb.model_copy(update={"allowed_roots": [ingest]}),
            "ralph": settings.ralph.model_copy(update={"workers": 0, "workspace_roots": [workspaces]}),
        }
    )


def message_of(result: Any) -> str:
    return " ".join(str(getattr(block, "text", "")) for block in result.content)


def check(name: str, args: dict[str, Any], outcome: Any, problems: list[str]) -> None:
    """Record what is wrong with one call's outcome (kept short: the first problems are enough to debug)."""
    sent = repr(args) + json.dumps(args, default=str)
    if isinstance(outcome, MCPError):
        if outcome.error.code != INVALID_PARAMS:
            problems.append(f"{name}: protocol error {outcome.error.code} {outcome.error.message[:200]!r}")
        text = outcome.error.message
    elif getattr(outcome, "is_error", False):
        text = message_of(outcome)
        if text.strip() == f"Error executing tool {name}":
            problems.append(f"{name}: crash on {sent[:160]}")
    else:
        return
    for leak in LEAKS:
        marker = leak.format(name=name)
        if marker in text and marker not in sent:
            problems.append(f"{name}: message leaks {marker!r}: {text[:300]!r}")


def crash_count(server: Any) -> float:
    total = 0.0
    for line in server.core.metrics.render().decode().splitlines():
        if line.startswith("mcpstack_tool_calls_total{") and 'outcome="crash"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def fuzz_tool(client: Client, name: str, schema: dict[str, Any], problems: list[str]) -> int:
    """Run on a worker thread: Hypothesis draws, each call hops back to the event loop. Returns calls made."""
    calls = 0

    async def call(args: dict[str, Any]) -> Any:
        try:
            return await client.call_tool(name, args)
        except MCPError as exc:
            return exc

    for round_number in range(MAX_ROUNDS):
        # Fixed seeds keep runs reproducible; a small argument space can run dry, so later rounds draw more.
        @seed(round_number)
        @settings(
            max_examples=PER_TOOL - calls,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(args=arguments(schema))
        def run(args: dict[str, Any]) -> None:
            nonlocal calls
            calls += 1
            check(name, args, anyio.from_thread.run(call, args), problems)

        run()
        if calls >= PER_TOOL:
            break
    return calls


@pytest.mark.parametrize("server_name", ["aidb", "hybrid", "ralph"])
async def test_fuzzed_tool_calls_never_crash_or_leak(
    server_name: str, stack_settings: StackSettings, tmp_path: Path
) -> None:
    server = build_server(server_name, fuzz_settings(stack_settings, tmp_path))
    problems: list[str] = []
    counts: dict[str, int] = {}
    with anyio.fail_after(SERVER_DEADLINE_SECONDS):
        async with Client(server.mcp) as client:
            tools = [tool for tool in (await client.list_tools()).tools if tool.name not in SKIPPED]
            for tool in tools:
                schema = dict(tool.input_schema)
                counts[tool.name] = await anyio.to_thread.run_sync(fuzz_tool, client, tool.name, schema, problems)
            ready, report = await server.readiness()
    assert not problems, f"{len(problems)} bad outcomes, first ones: {problems[:15]}"
    assert crash_count(server) == 0
    assert ready, report
    assert all(count >= PER_TOOL for count in counts.values()), counts


@pytest.mark.parametrize("bad", ["a\x00b", "x\ud800y", "\udfff"])
async def test_nul_or_lone_surrogate_in_any_argument_is_invalid_params(
    bad: str, stack_settings: StackSettings, tmp_path: Path
) -> None:
    server = build_server("hybrid", fuzz_settings(stack_settings, tmp_path))
    async with Client(server.mcp) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(
                "track_interaction",
                {"query": "q", "response": "r", "agent_type": "local", "model_used": "m", "context_ids": ["ok", bad]},
            )
    assert refused.value.error.code == INVALID_PARAMS
    assert "context_ids[1]" in refused.value.error.message
    assert crash_count(server) == 0
