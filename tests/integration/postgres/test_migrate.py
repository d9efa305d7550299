"""Migrations against a real server: from empty, again, concurrently under the advisory lock, and on bad files."""

import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio import to_thread

from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.postgres import MIGRATION_LOCK_KEY, Migration, load_migrations, migrate
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TIMESTAMPTZ = "timestamp with time zone"

# (data type, nullable) per column, as information_schema reports them.
FOUNDATION_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "schema_migrations": {
        "version": ("integer", False),
        "name": ("text", False),
        "checksum": ("text", False),
        "applied_at": (TIMESTAMPTZ, False),
    },
    "api_keys": {
        "id": ("text", False),
        "name": ("text", True),
        "key_hash": ("bytea", False),
        "scopes": ("ARRAY", False),
        "created_at": (TIMESTAMPTZ, False),
        "revoked_at": (TIMESTAMPTZ, True),
        "last_used_at": (TIMESTAMPTZ, True),
        # A key's own rate limit (0006_key_rates); NULL takes the server's.
        "calls_per_minute": ("double precision", True),
        "burst": ("integer", True),
    },
    "runtime_config": {
        "key": ("text", False),
        "value": ("jsonb", False),
        "updated_at": (TIMESTAMPTZ, False),
        "updated_by": ("text", True),
    },
    "audit_log": {
        "id": ("bigint", False),
        "at": (TIMESTAMPTZ, False),
        "actor": ("text", True),
        "action": ("text", True),
        "target": ("text", True),
        "old_value": ("jsonb", True),
        "new_value": ("jsonb", True),
    },
}
FOUNDATION_PRIMARY_KEYS = {
    "schema_migrations": ["version"],
    "api_keys": ["id"],
    "runtime_config": ["key"],
    "audit_log": ["id"],
}

WAIT_SECONDS = 30


@dataclass(frozen=True)
class Schema:
    tables: dict[str, dict[str, tuple[str, bool]]]
    primary_keys: dict[str, list[str]]
    indexes: dict[str, str]


async def _schema(dsn: str) -> Schema:
    """Every column, index and primary key of the current schema, for comparisons."""
    connection = await asyncpg.connect(dsn)
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
        keys = await connection.fetch(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name, table_name) "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
            "ORDER BY tc.table_name, kcu.ordinal_position"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname"
        )
    finally:
        await connection.close()
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for row in columns:
        tables.setdefault(row["table_name"], {})[row["column_name"]] = (row["data_type"], row["is_nullable"] == "YES")
    primary_keys: dict[str, list[str]] = {}
    for row in keys:
        primary_keys.setdefault(row["table_name"], []).append(row["column_name"])
    return Schema(tables, primary_keys, {row["indexname"]: row["indexdef"] for row in indexes})


async def _recorded(dsn: str) -> list[tuple[int, str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    finally:
        await connection.close()
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


async def _load(directory: Path) -> tuple[Migration, ...]:
    return await to_thread.run_sync(load_migrations, directory)


async def _wait_for_lock_waiters(connection: "asyncpg.Connection[asyncpg.Record]", count: int) -> None:
    async def queued() -> bool:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return bool(waiting >= count)

    await wait_until(queued, timeout=WAIT_SECONDS, interval=0.02)


async def test_migrations_from_empty_create_the_foundation_schema(pg_empty_dsn: str) -> None:
    packaged = await to_thread.run_sync(load_migrations)

    applied = await migrate(pg_empty_dsn)

    assert applied == packaged
    assert applied[0].label == "0001_foundation"
    schema = await _schema(pg_empty_dsn)
    for table, columns in FOUNDATION_SCHEMA.items():
        assert schema.tables[table] == columns
        assert schema.primary_keys[table] == FOUNDATION_PRIMARY_KEYS[table]
    assert "audit_log_at_idx" in schema.indexes
    assert [(version, checksum) for version, _, checksum in await _recorded(pg_empty_dsn)] == [
        (migration.version, migration.checksum) for migration in packaged
    ]


async def test_migrating_again_applies_nothing_and_keeps_the_schema(pg_empty_dsn: str) -> None:
    await migrate(pg_empty_dsn)
    before = await _schema(pg_empty_dsn)
    recorded = await _recorded(pg_empty_dsn)

    applied = await migrate(pg_empty_dsn)

    assert applied == ()
    assert await _schema(pg_empty_dsn) == before
    assert await _recorded(pg_empty_dsn) == recorded


async def test_upgrading_release_by_release_yields_the_schema_of_a_fresh_install(
    pg_empty_dsn: str, pg_dsn: str
) -> None:
    packaged = await to_thread.run_sync(load_migrations)
    assert len(packaged) > 1
    for release in range(1, len(packaged) + 1):
        # Each release starts on the database the previous one left and applies only its own new file.
        assert await migrate(pg_empty_dsn, packaged[:release]) == packaged[release - 1 : release]

    # pg_dsn was migrated in one go (the session's template database).
    assert await _schema(pg_empty_dsn) == await _schema(pg_dsn)
    assert [(v, n, c) for v, n, c in await _recorded(pg_empty_dsn)] == [
        (m.version, m.name, m.checksum) for m in packaged
    ]


async def test_key_rates_upgrade_keeps_existing_keys_on_the_default_and_bounds_new_rates(pg_empty_dsn: str) -> None:
    packaged = await to_thread.run_sync(load_migrations)
    index = next(i for i, migration in enumerate(packaged) if migration.name == "key_rates")
    await migrate(pg_empty_dsn, packaged[:index])
    connection = await asyncpg.connect(pg_empty_dsn)
    try:
        await connection.execute("INSERT INTO api_keys (id, key_hash, scopes) VALUES ('old', 'x', '{read}')")
        await migrate(pg_empty_dsn)
        # A key issued before the upgrade keeps the server's limit.
        assert tuple(await connection.fetchrow("SELECT calls_per_minute, burst FROM api_keys WHERE id = 'old'")) == (
            None,
            None,
        )
        insert = (
            "INSERT INTO api_keys (id, key_hash, scopes, calls_per_minute, burst) VALUES ($1, 'x', '{read}', $2, $3)"
        )
        await connection.execute(insert, "bulk", 1_000_000.0, 100_000)
        for number, (calls_per_minute, burst) in enumerate(
            [(0.0, None), (1_000_001.0, None), (float("nan"), None), (float("inf"), None), (None, 0), (None, 100_001)]
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                await connection.execute(insert, f"bad{number}", calls_per_minute, burst)
    finally:
        await connection.close()


async def test_migration_lock_held_too_long_is_a_dependency_unavailable_with_retry_after(pg_empty_dsn: str) -> None:
    blocker = await asyncpg.connect(pg_empty_dsn)
    try:
        await blocker.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        with pytest.raises(DependencyUnavailable) as busy:
            await migrate(pg_empty_dsn, lock_timeout_seconds=0.2)
    finally:
        await blocker.close()
    assert busy.value.dependency == "postgres"
    assert busy.value.retry_after_seconds == 0.2
    assert "schema_migrations" not in (await _schema(pg_empty_dsn)).tables


async def test_two_tasks_migrating_together_apply_each_file_once(pg_empty_dsn: str) -> None:
    packaged = await to_thread.run_sync(load_migrations)
    results: list[tuple[Migration, ...]] = []

    async def run() -> None:
        results.append(await migrate(pg_empty_dsn))

    blocker = await asyncpg.connect(pg_empty_dsn)
    try:
        # Holding the lock first proves that both runners really queue on it.
        await blocker.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            group.start_soon(run)
            await _wait_for_lock_waiters(blocker, 2)
            await blocker.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await blocker.close()

    assert sorted(results, key=len) == [(), packaged]
    assert [version for version, _, _ in await _recorded(pg_empty_dsn)] == [m.version for m in packaged]


async def test_two_processes_migrating_together_apply_each_file_once(pg_empty_dsn: str) -> None:
    packaged = await to_thread.run_sync(load_migrations)
    script = (
        "import sys, anyio\n"
        "from mcp_servers.shared.postgres import migrate\n"
        "print(len(anyio.run(migrate, sys.argv[1])))\n"
    )
    outputs: list[int] = []

    async def run() -> None:
        result = await anyio.run_process([sys.executable, "-c", script, pg_empty_dsn])
        outputs.append(int(result.stdout.decode().strip()))

    blocker = await asyncpg.connect(pg_empty_dsn)
    try:
        await blocker.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            group.start_soon(run)
            await _wait_for_lock_waiters(blocker, 2)
            await blocker.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await blocker.close()

    assert sorted(outputs) == [0, len(packaged)]
    assert [version for version, _, _ in await _recorded(pg_empty_dsn)] == [m.version for m in packaged]


async def test_edited_migration_stops_start_up_with_configuration_error(pg_empty_dsn: str, tmp_path: Path) -> None:
    await to_thread.run_sync(_write, tmp_path, {"0001_first.sql": "CREATE TABLE first (x integer);"})
    await migrate(pg_empty_dsn, await _load(tmp_path))
    await to_thread.run_sync(_write, tmp_path, {"0001_first.sql": "CREATE TABLE first (x bigint);"})

    with pytest.raises(ConfigurationError):
        await migrate(pg_empty_dsn, await _load(tmp_path))


async def test_line_ending_change_is_not_an_edit(pg_empty_dsn: str, tmp_path: Path) -> None:
    await to_thread.run_sync(_write, tmp_path, {"0001_first.sql": "CREATE TABLE first (x integer);\n"})
    await migrate(pg_empty_dsn, await _load(tmp_path))
    await to_thread.run_sync(_write, tmp_path, {"0001_first.sql": "CREATE TABLE first (x integer);\r\n"})

    assert await migrate(pg_empty_dsn, await _load(tmp_path)) == ()


async def test_failed_migration_is_rolled_back_and_applied_once_fixed(pg_empty_dsn: str, tmp_path: Path) -> None:
    files = {
        "0001_first.sql": "CREATE TABLE first (x integer);",
        "0002_second.sql": "CREATE TABLE second (x integer); SELECT no_such_function();",
    }
    await to_thread.run_sync(_write, tmp_path, files)

    with pytest.raises(ConfigurationError):
        await migrate(pg_empty_dsn, await _load(tmp_path))

    assert [version for version, _, _ in await _recorded(pg_empty_dsn)] == [1]
    assert "second" not in (await _schema(pg_empty_dsn)).tables
    await to_thread.run_sync(_write, tmp_path, {"0002_second.sql": "CREATE TABLE second (x integer);"})
    applied = await migrate(pg_empty_dsn, await _load(tmp_path))
    assert [migration.label for migration in applied] == ["0002_second"]


async def test_database_migrated_by_a_newer_release_is_accepted(pg_empty_dsn: str, tmp_path: Path) -> None:
    await to_thread.run_sync(_write, tmp_path, {"0001_first.sql": "SELECT 1;", "0002_second.sql": "SELECT 2;"})
    newer = await _load(tmp_path)
    await migrate(pg_empty_dsn, newer)

    assert await migrate(pg_empty_dsn, newer[:1]) == ()


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql"])
async def test_misnamed_migration_file_is_a_configuration_error(tmp_path: Path, name: str) -> None:
    await to_thread.run_sync(_write, tmp_path, {name: "SELECT 1;"})

    with pytest.raises(ConfigurationError):
        await _load(tmp_path)


async def test_two_files_with_one_version_are_a_configuration_error(tmp_path: Path) -> None:
    await to_thread.run_sync(_write, tmp_path, {"0001_one.sql": "SELECT 1;", "0001_two.sql": "SELECT 2;"})

    with pytest.raises(ConfigurationError):
        await _load(tmp_path)
