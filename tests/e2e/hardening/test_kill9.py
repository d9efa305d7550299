"""kill -9 each MCP server in the middle of concurrent writes, restart it: no acknowledged write is lost.

Three writers per server call a write tool over Streamable HTTP; once ACKS_BEFORE_KILL writes were acknowledged
the process gets SIGKILL while writes are still in flight (those fail on the client and count as unacknowledged).
The server restarts on the same data dir and database; every acknowledged id must be readable through the server
(AIDB get_document, Ralph task_status) or, for Hybrid, present in its PostgreSQL table (it has no read-one tool).
"""

import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import asyncpg
import pytest
from mcp import Client

from mcp_servers.shared.config import StackSettings
from tests.e2e.hardening.processes import Served, served
from tests.e2e.test_transports import issue_key
from tests.support import http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

WRITERS = 3
ACKS_BEFORE_KILL = 24
MAX_WRITES_PER_WRITER = 200
CALL_TIMEOUT_SECONDS = 30

Write = Callable[[Client, int], Awaitable[str]]


async def write_aidb(client: Client, n: int) -> str:
    result = await client.call_tool(
        "store_document", {"content": f"kill9 document {n} {uuid.uuid4()} about crash safety", "title": f"k{n}"}
    )
    assert not result.is_error, result
    return str((result.structured_content or {})["document_id"])


async def write_hybrid(client: Client, n: int) -> str:
    result = await client.call_tool(
        "track_interaction",
        {"query": f"question {n}", "response": f"answer {n}", "agent_type": "local", "model_used": "m"},
    )
    assert not result.is_error, result
    return str((result.structured_content or {})["interaction_id"])


async def write_ralph(client: Client, n: int) -> str:
    result = await client.call_tool(
        "submit_task", {"prompt": f"task {n}", "backend": "command", "require_approval": True}
    )
    assert not result.is_error, result
    return str((result.structured_content or {})["task_id"])


async def read_back(server: str, settings: StackSettings, client: Client, ids: list[str]) -> list[str]:
    """The acknowledged ids the restarted server cannot show."""
    missing = []
    if server == "hybrid":
        assert settings.postgres.dsn is not None
        connection = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            rows = await connection.fetch("SELECT id::text FROM hybrid_interactions WHERE id = ANY($1::uuid[])", ids)
        finally:
            await connection.close()
        found = {row["id"] for row in rows}
        return [i for i in ids if i not in found]
    tool, key = ("get_document", "document_id") if server == "aidb" else ("task_status", "task_id")
    for ident in ids:
        result = await client.call_tool(tool, {key: ident})
        if result.is_error:
            missing.append(ident)
    return missing


WRITES: dict[str, Write] = {"aidb": write_aidb, "hybrid": write_hybrid, "ralph": write_ralph}


@pytest.mark.parametrize("server", list(WRITES))
async def test_kill_9_mid_write_loses_no_acknowledged_write(
    server: str, module_settings: StackSettings, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["admin"])
    env = {"MCP_STACK_DATA_DIR": str(tmp_path / "data"), "MCP_STACK_RATE_LIMIT__ENABLED": "false"}
    if server == "ralph":
        # Tasks wait for approval and no worker runs: the template is never executed.
        env |= {
            "MCP_STACK_RALPH__WORKERS": "0",
            "MCP_STACK_RALPH__COMMAND_TEMPLATES": json.dumps({"default": ["true"]}),
        }
    acknowledged: list[str] = []
    failed_after_kill = 0
    numbers = itertools.count()
    killed = anyio.Event()
    async with served(server, module_settings, tmp_path / "logs", env) as proc:

        async def writer() -> None:
            nonlocal failed_after_kill
            try:
                async with http_client(proc.url, token) as client:
                    for _ in range(MAX_WRITES_PER_WRITER):
                        with anyio.fail_after(CALL_TIMEOUT_SECONDS):
                            acknowledged.append(await WRITES[server](client, next(numbers)))
                        if len(acknowledged) >= ACKS_BEFORE_KILL and not killed.is_set():
                            killed.set()
            except Exception:  # the connection dies with the process: any error ends this writer
                failed_after_kill += 1
                assert killed.is_set(), "a write failed before the kill"

        async def killer(p: Served) -> None:
            with anyio.fail_after(120):
                await killed.wait()
            await p.kill9()

        async with anyio.create_task_group() as tg:
            for _ in range(WRITERS):
                tg.start_soon(writer)
            tg.start_soon(killer, proc)
        assert proc.process.returncode == -9
        assert failed_after_kill >= 1, "the kill did not interrupt any writer"
        await proc.restart()
        async with http_client(proc.url, token) as client:
            missing = await read_back(server, module_settings, client, list(acknowledged))
    assert len(acknowledged) >= ACKS_BEFORE_KILL
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes lost: {missing[:5]}"
