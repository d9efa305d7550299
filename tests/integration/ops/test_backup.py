"""Backup and restore round trip: AIDB documents, Ralph tasks, vectors and telemetry come back and answer the same."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from mcp_servers.aidb.points import CHUNKS_COLLECTION, project_filter
from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.ops.backup import create_backup, describe, read_manifest, restore_backup
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.errors import Conflict, InvalidRequest
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.telemetry import (
    Checkpoint,
    RotationPolicy,
    TelemetryEvent,
    TelemetryReader,
    TelemetryWriter,
)
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DOCUMENTS = [
    ("# Foxes\nThe quick brown fox jumps over the lazy dog near the riverbank.", "zoo"),
    ("# Python packaging\nUse pyproject.toml with setuptools to build a wheel of your package.", "dev"),
    ("# Backups\nA backup you never restored is a hope, not a backup; test the restore path.", "ops"),
    ("# Owls\nOwls hunt at night and turn their heads almost all the way around.", "zoo"),
]
QUERIES = ["animal running by the river", "how do I build a python wheel", "restore test"]


def _settings(base: StackSettings | None = None, **overrides: Any) -> StackSettings:
    fields: dict[str, Any] = {
        "rate_limit": {"enabled": False},
        "ralph": {"workers": 0, "command_templates": {"default": ["/bin/true"]}},
        "aidb": {"indexer_poll_seconds": 0.2},
        "telemetry": {"max_file_bytes": 2048, "max_file_age_seconds": 0, "compress": True},
    }
    if base is not None:
        fields |= {"data_dir": base.data_dir, "postgres": base.postgres.model_dump()}
    return load_settings(**(fields | overrides))


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def _searches(settings: StackSettings) -> list[list[tuple[str, str, float]]]:
    async with Client(create_aidb(build_core("aidb", settings)).mcp) as client:
        answers = []
        for query in QUERIES:
            hits = (await _call(client, "search", query=query, limit=3, project="*"))["hits"]
            answers.append([(hit["document_id"], hit["title"], round(hit["score"], 4)) for hit in hits])
        return answers


async def _tasks(settings: StackSettings) -> list[tuple[str, str, str]]:
    async with Client(create_ralph(build_core("ralph", settings)).mcp) as client:
        tasks = (await _call(client, "list_tasks", limit=50))["tasks"]
        return sorted((task["id"], task["status"], task["prompt_excerpt"]) for task in tasks)


async def _events(directory: Path) -> list[TelemetryEvent]:
    events, _ = await TelemetryReader(directory).read(Checkpoint(), max_events=100_000)
    return events


async def _populate(settings: StackSettings) -> None:
    async with Client(create_aidb(build_core("aidb", settings)).mcp) as client:
        for content, project in DOCUMENTS:
            await _call(client, "store_document", content=content, project=project)
    async with Client(create_ralph(build_core("ralph", settings)).mcp) as client:
        await _call(client, "submit_task", prompt="write the release notes", backend="command", require_approval=True)
        await _call(client, "submit_task", prompt="tidy the changelog", backend="command")
    # Small files, so the archive holds rotated (and compressed) telemetry as well as the live file.
    writer = TelemetryWriter(settings.telemetry_path, 2048, source="ops-test", policy=RotationPolicy(compress=True))
    for n in range(60):
        await writer.emit("tick", n=n, pad="x" * 40)
    await writer.maintain()


async def test_restored_stack_answers_the_same_searches_and_shows_the_same_tasks(
    stack_settings: StackSettings, data_dir: Path, tmp_path: Path
) -> None:
    source = _settings(stack_settings)
    await _populate(source)
    searches, tasks = await _searches(source), await _tasks(source)
    events = await _events(source.telemetry_path)
    assert all(searches) and len(tasks) == 2 and len(events) >= 60
    assert [p async for p in anyio.Path(source.telemetry_path).glob("events-*.jsonl.gz")]

    archive = tmp_path / "backups" / "stack.tar"
    manifest = await create_backup(source, archive)
    assert {name for _, name, _ in manifest.collections} >= {"aidb_chunks", "aidb_tools"}
    assert (await read_manifest(archive)).files == manifest.files
    assert (await anyio.Path(archive).stat()).st_mode & 0o077 == 0

    # A fresh place: an empty data dir and no DSN, so the restore initialises an embedded PostgreSQL there.
    target = _settings(data_dir=data_dir / "restored")
    restored = await restore_backup(target, archive)
    assert restored.files == manifest.files

    assert await _searches(target) == searches
    assert await _tasks(target) == tasks
    assert [e.id for e in await _events(target.telemetry_path)] == [e.id for e in events]
    assert await anyio.Path(target.data_dir / "restored-config" / "settings.json").exists()


async def test_restore_refuses_a_database_that_is_not_empty(stack_settings: StackSettings, tmp_path: Path) -> None:
    source = _settings(stack_settings)
    archive = tmp_path / "stack.tar"
    await create_backup(source, archive, vectors="skip")
    # The fixture's database is migrated, so it has tables: a restore over it must not mix two states.
    target = _settings(stack_settings, data_dir=tmp_path / "elsewhere")
    with pytest.raises(Conflict):
        await restore_backup(target, archive)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
async def test_a_corrupted_archive_is_refused_before_anything_is_written(
    stack_settings: StackSettings, pg_empty_dsn: str, tmp_path: Path, damage: str
) -> None:
    source = _settings(stack_settings)
    archive = tmp_path / "stack.tar"
    await create_backup(source, archive, vectors="skip")
    data = bytearray(await anyio.Path(archive).read_bytes())
    if damage == "flip":
        # Inside the dump's payload (after the manifest), where only the checksum can notice.
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) * 2 // 3]
    else:
        data = bytearray(b"not a tar archive at all" * 100)
    await anyio.Path(archive).write_bytes(bytes(data))

    target = _settings(data_dir=tmp_path / "target", postgres={"dsn": pg_empty_dsn})
    with pytest.raises(InvalidRequest):
        await restore_backup(target, archive)
    connection = await asyncpg.connect(pg_empty_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await connection.close()

    environment = {
        **os.environ,
        "MCP_STACK_DATA_DIR": str(tmp_path / "target"),
        "MCP_STACK_POSTGRES__DSN": pg_empty_dsn,
    }
    result = await anyio.run_process(
        [sys.executable, "-m", "mcp_servers.cli", "restore", str(archive)],
        env=environment,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcp-stack: backup archive stack.tar is corrupted"), lines


async def test_backup_while_running_leaves_held_vectors_to_a_rebuild_at_the_next_start(
    stack_settings: StackSettings, pg_empty_dsn: str, tmp_path: Path
) -> None:
    source = _settings(stack_settings)
    archive = tmp_path / "stack.tar"
    async with (
        Client(create_aidb(build_core("aidb", source)).mcp) as client,
        Client(create_hybrid(build_core("hybrid", source)).mcp) as hybrid,
    ):
        await _call(client, "store_document", content=DOCUMENTS[0][0], project="zoo")
        tracked = await _call(
            hybrid,
            "track_interaction",
            query="How do I feed the zoo's otters?",
            response="Twice a day, fish.",
            agent_type="local",
            model_used="m",
        )
        # The running servers hold their Edge shards: the backup goes on without them and says so.
        manifest = await create_backup(source, archive)
    assert manifest.vector_mode == "snapshot" and sorted(manifest.rebuilt_namespaces) == ["aidb", "hybrid"]
    assert not [ns for ns, _, _ in manifest.collections if ns in {"aidb", "hybrid"}]
    assert "held by a running server" in describe(manifest)
    assert sorted((await read_manifest(archive)).rebuilt_namespaces) == ["aidb", "hybrid"]
    assert not [p async for p in anyio.Path(tmp_path).glob(".*")]  # no staging left behind

    target = _settings(data_dir=tmp_path / "target", postgres={"dsn": pg_empty_dsn})
    await restore_backup(target, archive)
    async with (
        Client(create_aidb(build_core("aidb", target)).mcp) as client,
        Client(create_hybrid(build_core("hybrid", target)).mcp) as hybrid,
    ):
        # The first start finds PostgreSQL's chunks missing from the index and reindexes them; Hybrid rebuilds
        # its collections from its rows the same way.
        async def found() -> bool:
            hits = (await _call(client, "search", query="brown fox", project="zoo", mode="lexical"))["hits"]
            return [hit["title"] for hit in hits] == ["Foxes"]

        async def recalled() -> bool:
            hits = (await _call(hybrid, "search_context", query="otters", collection="interaction-history"))["hits"]
            return [hit["id"] for hit in hits] == [f"interaction-history:{tracked['interaction_id']}"]

        await wait_until(found, timeout=60)
        await wait_until(recalled, timeout=60)


def _cli_environment(settings: StackSettings) -> dict[str, str]:
    assert settings.postgres.dsn is not None
    return {
        **os.environ,
        "MCP_STACK_DATA_DIR": str(settings.data_dir),
        "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
    }


async def _reindex_cli(settings: StackSettings) -> list[str]:
    result = await anyio.run_process(
        [sys.executable, "-m", "mcp_servers.cli", "reindex"],
        env=_cli_environment(settings),
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip().splitlines()


async def test_mcp_stack_reindex_rebuilds_with_aidb_stopped_and_queues_with_it_running(
    stack_settings: StackSettings,
) -> None:
    settings = _settings(stack_settings)
    server = create_aidb(build_core("aidb", settings))
    async with Client(server.mcp) as client:
        for content, project in DOCUMENTS:
            await _call(client, "store_document", content=content, project=project)
        await server.deps.vectors.delete_where(CHUNKS_COLLECTION, project_filter("zoo"))  # an index missing chunks
        assert (await _call(client, "stats"))["chunks_indexed"] == 2
        lines = await _reindex_cli(settings)
        # Running: the CLI cannot open the shards, so the running server's indexer does the work.
        assert len(lines) == 1 and lines[0].startswith("AIDB is running: queued 4 documents"), lines

        async def indexed() -> bool:
            stats = await _call(client, "stats")
            return bool(stats["pending_index"] == 0 and stats["chunks_indexed"] == stats["chunks"] == 4)

        await wait_until(indexed, timeout=60)
        await server.deps.vectors.drop(CHUNKS_COLLECTION)
    # Stopped: the CLI opens the index itself and rebuilds it, with progress lines.
    lines = await _reindex_cli(settings)
    assert lines[-1].startswith("reindexed every project: 4 documents, 4 chunks") and "reindex: 4 of 4 chunks" in lines
    async with Client(create_aidb(build_core("aidb", settings)).mcp) as client:
        hits = (await _call(client, "search", query="owls at night", project="*", mode="lexical"))["hits"]
        assert [hit["title"] for hit in hits] == ["Owls"]
