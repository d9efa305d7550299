"""Crash safety: a writer killed with SIGKILL mid-ingest loses no acknowledged document and duplicates none."""

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.points import CHUNKS_COLLECTION
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer
from tests.integration.aidb.conftest import structured
from tests.support import REPO

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = 2000
KILL_AFTER = 300


def child_env(settings: StackSettings) -> dict[str, str]:
    """The child's MCP_STACK_* environment: the same database, data dir and vector backend as the test."""
    assert settings.postgres.dsn is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env.update(
        {
            "MCP_STACK_DATA_DIR": str(settings.data_dir),
            "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
            "MCP_STACK_VECTORS__BACKEND": settings.vectors.backend,
            "MCP_STACK_RATE_LIMIT__ENABLED": "false",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


async def read_acks(path: Path) -> dict[int, str]:
    """Acknowledged documents: number -> id (only complete lines)."""
    try:
        text = await anyio.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    acks: dict[int, str] = {}
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            number, document_id = line.split()
            acks[int(number)] = document_id
    return acks


async def test_acknowledged_documents_survive_sigkill_exactly_once(
    aidb_server: StackServer[AidbDeps], aidb_settings: StackSettings, tmp_path: Path
) -> None:
    acks_path = tmp_path / "acks.txt"
    command = [sys.executable, "-m", "tests.integration.aidb.crash_child", str(acks_path), str(TOTAL)]
    process = await anyio.open_process(command, env=child_env(aidb_settings), cwd=REPO)
    try:
        with anyio.fail_after(240):
            while len(await read_acks(acks_path)) < KILL_AFTER:
                assert process.returncode is None, "the child exited before it was killed"
                await anyio.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no cleanup, no flush, possibly mid-transaction
        await process.wait()
    acks = await read_acks(acks_path)
    assert KILL_AFTER <= len(acks) < TOTAL

    async with Client(aidb_server.mcp) as client:
        # The restarted server's indexer drains whatever the killed one left in the outbox.
        with anyio.fail_after(60):
            while structured(await client.call_tool("stats", {}))["pending_index"]:
                await anyio.sleep(0.1)
        stats = structured(await client.call_tool("stats", {}))
        assert stats["documents"] >= len(acks)
        # Deterministic point ids: every stored chunk is in the index once, none twice, none orphaned.
        assert stats["chunks_indexed"] == stats["chunks"] == stats["documents"]

        async def hits_for(number: int) -> list[str]:
            page = structured(
                await client.call_tool(
                    "search", {"query": f"uniqueword{number}", "mode": "lexical", "limit": 5, "project": "crash"}
                )
            )
            return [hit["document_id"] for hit in page["hits"]]

        for number, document_id in acks.items():
            assert await hits_for(number) == [document_id]

        before = await aidb_server.deps.vectors.count(CHUNKS_COLLECTION)
        rebuilt = structured(await client.call_tool("reindex", {}))
        assert rebuilt["chunks"] == before == stats["chunks"]
        assert await aidb_server.deps.vectors.count(CHUNKS_COLLECTION) == before
        for number in list(acks)[:: max(1, len(acks) // 50)]:
            assert await hits_for(number) == [acks[number]]
