"""Database and open_database against real servers: DSN and embedded paths, breaker, outage and recovery."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from anyio import to_thread

from mcp_servers.shared.config import BreakerSettings, PostgresSettings, StackSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.postgres import Database, EmbeddedPostgres, load_migrations, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState
from tests.pg_fixtures import dsn_for_database
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _settings(data_dir: Path, dsn: str | None = None) -> StackSettings:
    postgres: dict[str, Any] = {"pool_min_size": 1, "pool_max_size": 4}
    if dsn is not None:
        postgres["dsn"] = dsn
    return load_settings(data_dir=data_dir, postgres=postgres)


@asynccontextmanager
async def _database(dsn: str, breakers: BreakerRegistry, **postgres: Any) -> AsyncIterator[Database]:
    database = await Database.open(dsn, PostgresSettings(**postgres), breakers)
    try:
        yield database
    finally:
        await database.close()


def _breakers(threshold: int = 5, open_seconds: float = 10.0) -> BreakerRegistry:
    return BreakerRegistry(BreakerSettings(failure_threshold=threshold, open_seconds=open_seconds))


async def test_open_database_with_a_dsn_migrates_and_answers_ping(pg_empty_dsn: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pg_empty_dsn)
    packaged = await to_thread.run_sync(load_migrations)

    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        assert await database.ping() >= 0
        versions = [row["version"] for row in await database.fetch("SELECT version FROM schema_migrations")]
        assert versions == [migration.version for migration in packaged]
        assert database.stats().max_size == 4

    assert not await to_thread.run_sync((tmp_path / "postgres").exists)


async def test_open_database_without_dsn_runs_the_embedded_server_in_the_data_dir(data_dir: Path) -> None:
    settings = _settings(data_dir)

    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        assert await database.fetchval("SELECT count(*) FROM schema_migrations") >= 1
        assert await to_thread.run_sync((EmbeddedPostgres(data_dir).pgdata / "PG_VERSION").is_file)

    assert not await EmbeddedPostgres(data_dir).is_running()


async def test_dsn_naming_a_missing_database_is_a_configuration_error(pg_server: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, dsn_for_database(pg_server, f"missing_{uuid.uuid4().hex}"))

    with pytest.raises(ConfigurationError):
        async with open_database(settings, BreakerRegistry(settings.breaker)):
            pass


async def test_unreachable_server_at_start_up_is_dependency_unavailable(data_dir: Path) -> None:
    # A socket directory where no server listens: refused at once, no network involved.
    settings = _settings(data_dir, f"postgresql://postgres@/postgres?host={data_dir}&port=5999")

    with pytest.raises(DependencyUnavailable) as caught:
        async with open_database(settings, BreakerRegistry(settings.breaker), startup_timeout_seconds=0.2):
            pass

    assert caught.value.dependency == "postgres"


async def test_ping_fails_while_the_server_is_down_and_recovers_after_restart(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    breakers = _breakers(threshold=2, open_seconds=0.2)
    dsn = await server.start()
    try:
        async with _database(dsn, breakers, pool_min_size=2, pool_max_size=4, connect_timeout_seconds=2) as database:
            assert await database.ping() >= 0

            # A connection borrowed across the shutdown fails on its next query.
            with pytest.raises(DependencyUnavailable) as during:
                async with database.connection() as connection:
                    await connection.fetchval("SELECT 1")
                    await server.stop()
                    await connection.fetchval("SELECT 1")
            assert during.value.dependency == "postgres"
            with pytest.raises(DependencyUnavailable) as after:
                await database.ping()
            assert after.value.dependency == "postgres"
            assert breakers.get("postgres").state is BreakerState.OPEN

            await server.start()

            async def answers() -> bool:
                try:
                    await database.ping()
                except DependencyUnavailable:
                    return False
                return True

            await wait_until(answers, timeout=30)
            assert breakers.get("postgres").state is BreakerState.CLOSED
            async with database.transaction() as connection:
                await connection.execute("CREATE TABLE IF NOT EXISTS after_restart (x integer)")
    finally:
        await server.stop()


async def test_query_errors_pass_through_without_tripping_the_breaker(pg_dsn: str) -> None:
    breakers = _breakers(threshold=1)
    insert = "INSERT INTO api_keys (id, key_hash, scopes) VALUES ($1, $2, $3)"
    async with _database(pg_dsn, breakers) as database:
        await database.execute(insert, "k1", b"hash", ["read"])

        with pytest.raises(asyncpg.UniqueViolationError):
            await database.execute(insert, "k1", b"hash", ["read"])
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await database.execute("SELEC 1")

        assert breakers.get("postgres").state is BreakerState.CLOSED
        assert await database.ping() >= 0


async def test_command_timeout_is_dependency_unavailable(pg_dsn: str) -> None:
    async with _database(pg_dsn, _breakers(), command_timeout_seconds=0.1) as database:
        with pytest.raises(DependencyUnavailable):
            await database.execute("SELECT pg_sleep(5)")


async def test_transaction_commits_on_success_and_rolls_back_on_error(pg_dsn: str) -> None:
    async with _database(pg_dsn, _breakers()) as database:
        async with database.transaction() as connection:
            await connection.execute("INSERT INTO runtime_config (key, value) VALUES ('kept', '1')")
        with pytest.raises(ZeroDivisionError):
            async with database.transaction() as connection:
                await connection.execute("INSERT INTO runtime_config (key, value) VALUES ('dropped', '1')")
                raise ZeroDivisionError

        keys = [row["key"] for row in await database.fetch("SELECT key FROM runtime_config ORDER BY key")]
        assert keys == ["kept"]


async def test_stats_count_borrowed_and_idle_connections(pg_dsn: str) -> None:
    async with _database(pg_dsn, _breakers(), pool_min_size=2, pool_max_size=3) as database:
        assert database.stats().in_use == 0
        async with database.connection(), database.connection():
            stats = database.stats()
            assert (stats.in_use, stats.max_size) == (2, 3)
        stats = database.stats()
        assert stats.in_use == 0
        assert stats.idle >= 2


async def test_json_columns_take_and_return_python_values(pg_dsn: str) -> None:
    value = {"limits": [1, 2.5], "enabled": True, "name": "ünïcode"}
    async with _database(pg_dsn, _breakers()) as database:
        await database.execute("INSERT INTO runtime_config (key, value) VALUES ($1, $2)", "limits", value)

        assert await database.fetchval("SELECT value FROM runtime_config WHERE key = 'limits'") == value
        row = await database.fetchrow("SELECT value->'limits' AS limits FROM runtime_config")
        assert row is not None
        assert row["limits"] == [1, 2.5]


async def test_concurrent_callers_share_the_pool(pg_dsn: str) -> None:
    results: list[int] = []

    async with _database(pg_dsn, _breakers(), pool_min_size=1, pool_max_size=2) as database:

        async def call(number: int) -> None:
            results.append(await database.fetchval("SELECT $1::int FROM pg_sleep(0.01)", number))

        async with anyio.create_task_group() as group:
            for number in range(10):
                group.start_soon(call, number)

    assert sorted(results) == list(range(10))


async def test_a_held_connection_does_not_keep_the_breaker_half_open(pg_dsn: str) -> None:
    breakers = _breakers(threshold=1, open_seconds=0.05)
    async with _database(pg_dsn, breakers) as database:
        breaker = breakers.get("postgres")
        breaker.record_failure(ConnectionResetError())
        assert breaker.state is BreakerState.OPEN

        async def half_open() -> bool:
            return breaker.state is BreakerState.HALF_OPEN

        await wait_until(half_open, timeout=5)
        async with database.held_connection() as listener:
            # The acquisition was the probe: the breaker closed, and other callers are served meanwhile.
            assert breaker.state is BreakerState.CLOSED
            assert await database.fetchval("SELECT 1") == 1
            assert await listener.fetchval("SELECT 2") == 2
        assert database.stats().in_use == 0
