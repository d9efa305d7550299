"""AIDB's ingest_path and reindex as MCP tasks (io.modelcontextprotocol/tasks, 2026-07-28) over real HTTP.

Raw JSON-RPC (the SDK client does not resolve `resultType: "task"`) with scoped keys, so that principals differ.
"""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from tests.integration.ralph.test_mcp_tasks import TERMINAL, RpcError, Wire, wire
from tests.integration.test_harness import issue_key
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# An unknown, expired or foreign task id: the one answer for all three (no existence oracle).
UNKNOWN_TASK = -32602


@contextlib.asynccontextmanager
async def served(settings: StackSettings, **aidb: Any) -> AsyncIterator[str]:
    settings = settings.model_copy(update={"aidb": settings.aidb.model_copy(update=aidb)})
    async with serve_app(create_server(build_core("aidb", settings)).http_app()) as url:
        yield url


async def key(settings: StackSettings, scopes: list[str]) -> str:
    return (await issue_key(settings, scopes))[1]


def write_files(root: Path, count: int, prefix: str = "note") -> None:
    for n in range(count):
        (root / f"{prefix}-{n:04d}.md").write_text(f"# {prefix} {n}\n\nfact number {n} about {prefix}s\n")


async def ingest(client: Wire, **arguments: Any) -> dict[str, Any]:
    return await client.request("tools/call", {"name": "ingest_path", "arguments": arguments}, "ingest_path")


async def documents(client: Wire) -> int:
    listed = await client.request(
        "tools/call", {"name": "list_documents", "arguments": {"limit": 200}}, "list_documents"
    )
    return len(listed["structuredContent"]["documents"])


async def test_ingest_path_as_a_task_completes_with_its_ingest_result_for_its_principal_only(
    aidb_settings: StackSettings, roots: Path
) -> None:
    write_files(roots, 3)
    owner, other = await key(aidb_settings, ["aidb:write"]), await key(aidb_settings, ["aidb:write"])
    async with served(aidb_settings) as url, wire(url, owner) as mine, wire(url, other) as theirs:
        created = await ingest(mine, path=str(roots), glob="*.md")
        task_id = created["taskId"]
        refused = []
        for attempt in (theirs.get(task_id), theirs.request("tasks/cancel", {"taskId": task_id}, task_id)):
            with pytest.raises(RpcError) as error:
                await attempt
            refused.append(error.value.code)
        done = await mine.wait(task_id, TERMINAL)
        with pytest.raises(RpcError) as unknown:
            await mine.get("0" * 32)
        async with wire(url, owner, tasks=False) as plain:
            synchronous = await ingest(plain, path=str(roots), glob="*.md")
    assert (created["resultType"], created["status"]) == ("task", "working")
    assert created["ttlMs"] == aidb_settings.aidb.mcp_task_ttl_seconds * 1000 and "result" not in created
    assert refused == [UNKNOWN_TASK, UNKNOWN_TASK] and unknown.value.code == UNKNOWN_TASK
    assert (done["resultType"], done["status"], done["result"]["isError"]) == ("complete", "completed", False)
    result = done["result"]["structuredContent"]
    assert (result["files_seen"], result["created"], len(result["document_ids"])) == (3, 3, 3)
    assert done["statusMessage"].startswith("3 of 3 files: 3 new")  # the last progress report
    # Without the extension the same call is the plain synchronous tool result.
    assert "taskId" not in synchronous and synchronous["structuredContent"]["unchanged"] == 3


async def test_reindex_as_a_task_needs_admin_and_inlines_its_reindex_result(
    aidb_settings: StackSettings, roots: Path
) -> None:
    write_files(roots, 2)
    admin, writer = await key(aidb_settings, ["aidb:admin"]), await key(aidb_settings, ["aidb:write"])
    async with served(aidb_settings) as url, wire(url, admin) as client, wire(url, writer) as not_admin:
        await client.wait((await ingest(client, path=str(roots)))["taskId"], TERMINAL)
        with pytest.raises(RpcError):  # the tool's scope is checked before any task exists
            await not_admin.request("tools/call", {"name": "reindex", "arguments": {}}, "reindex")
        created = await client.request("tools/call", {"name": "reindex", "arguments": {}}, "reindex")
        done = await client.wait(created["taskId"], TERMINAL)
    assert created["resultType"] == "task"
    assert done["status"] == "completed" and done["result"]["structuredContent"]["documents"] == 2


async def test_the_per_principal_cap_refuses_more_unfinished_tasks_with_rate_limited(
    aidb_settings: StackSettings, roots: Path
) -> None:
    write_files(roots, 400)
    owner, other = await key(aidb_settings, ["aidb:write"]), await key(aidb_settings, ["aidb:write"])
    async with served(aidb_settings, mcp_tasks_per_principal=1) as url, wire(url, owner) as mine:
        first = await ingest(mine, path=str(roots))
        with pytest.raises(RpcError) as refused:
            await ingest(mine, path=str(roots))
        async with wire(url, other) as theirs:  # the cap is per principal
            second = await ingest(theirs, path=str(roots), glob="note-000*.md")
            await theirs.wait(second["taskId"], TERMINAL)
        await mine.request("tasks/cancel", {"taskId": first["taskId"]}, first["taskId"])
        assert (await mine.wait(first["taskId"], TERMINAL))["status"] == "cancelled"
        third = await ingest(mine, path=str(roots), glob="note-000*.md")  # a slot is free again
    assert first["resultType"] == second["resultType"] == third["resultType"] == "task"
    assert refused.value.code == RATE_LIMITED


async def test_a_finished_task_expires_after_its_ttl(aidb_settings: StackSettings, roots: Path) -> None:
    write_files(roots, 1)
    owner = await key(aidb_settings, ["aidb:write"])
    async with served(aidb_settings, mcp_task_ttl_seconds=1) as url, wire(url, owner) as client:
        created = await ingest(client, path=str(roots))
        done = await client.wait(created["taskId"], TERMINAL)
        codes: list[int] = []
        with anyio.fail_after(10):
            while not codes:
                try:
                    await client.get(created["taskId"])
                except RpcError as gone:
                    codes.append(gone.code)
                await anyio.sleep(0.1)
    assert done["status"] == "completed" and done["ttlMs"] == 1000
    assert codes == [UNKNOWN_TASK]


async def test_cancelling_an_ingest_keeps_the_batches_it_committed_and_stores_no_more(
    aidb_settings: StackSettings, roots: Path
) -> None:
    total = 400
    write_files(roots, total)
    owner = await key(aidb_settings, ["aidb:write"])
    async with served(aidb_settings) as url, wire(url, owner) as client:
        created = await ingest(client, path=str(roots))
        task_id = created["taskId"]
        with anyio.fail_after(60):  # wait for the first batch's progress report: it is committed
            while not (await client.get(task_id)).get("statusMessage", "").split(" ")[0].lstrip("0"):
                await anyio.sleep(0.02)
        ack = await client.request("tasks/cancel", {"taskId": task_id}, task_id)
        cancelled = await client.wait(task_id, TERMINAL)
        kept = await documents(client)
        again = await client.request("tasks/cancel", {"taskId": task_id}, task_id)
        stats = await client.request("tools/call", {"name": "stats", "arguments": {}}, "stats")
    for answer in (ack, again):  # an empty ack (besides the server's _meta), idempotent on a terminal task
        assert answer["resultType"] == "complete" and set(answer) <= {"resultType", "_meta"}
    assert cancelled["status"] == "cancelled" and "result" not in cancelled and "error" not in cancelled
    assert 0 < kept < total
    assert stats["structuredContent"]["documents"] == kept  # the count does not move after the cancel
