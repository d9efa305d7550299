"""Real-service fixtures: PostgreSQL (MCP_STACK_TEST_DSN or embedded), settings for a stack on embedded defaults."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import rich.console  # noqa: F401  MCPServer() imports it lazily, and that import calls os.getcwd: do it here once
from blockbuster import BlockBuster, blockbuster_ctx

from mcp_servers.shared.config import StackSettings, load_settings
from tests.pg_fixtures import fresh_database, postgres_server, scratch_dir, template_database


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope so that session-scoped async fixtures (server, template) share one event loop runner.
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which a blocking call runs on the event loop (the SDK's own pattern)."""
    with blockbuster_ctx(["mcp_servers"]) as detector:
        # asyncpg stats ~/.pgpass and certificate paths while parsing a DSN: small, once per new connection.
        for function in detector.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_arguments")
        yield detector


@pytest.fixture(scope="session")
async def pg_server() -> AsyncIterator[str]:
    """DSN of the session's server (MCP_STACK_TEST_DSN or embedded), on its maintenance database."""
    async with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
async def pg_template(pg_server: str) -> AsyncIterator[str]:
    """Name of the session's migrated template database."""
    async with template_database(pg_server) as name:
        yield name


@pytest.fixture
async def pg_dsn(pg_server: str, pg_template: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database for one test."""
    async with fresh_database(pg_server, pg_template) as dsn:
        yield dsn


@pytest.fixture
async def pg_empty_dsn(pg_server: str) -> AsyncIterator[str]:
    """DSN of a fresh, empty database (no migrations) for one test."""
    async with fresh_database(pg_server, None) as dsn:
        yield dsn


@pytest.fixture
async def data_dir() -> AsyncIterator[Path]:
    """An empty data dir the embedded server's user can reach (pytest's tmp_path is private to root)."""
    async with scratch_dir() as path:
        yield path


@pytest.fixture
def stack_settings(pg_dsn: str, tmp_path: Path) -> StackSettings:
    """Settings for one test: a fresh migrated database, state under tmp_path, embedded engines."""
    return load_settings(data_dir=tmp_path / "data", postgres={"dsn": pg_dsn})
