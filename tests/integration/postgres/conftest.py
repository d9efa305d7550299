"""PostgreSQL fixtures for these tests, built from tests/pg_fixtures.py (to be lifted into tests/conftest.py)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pg_fixtures import fresh_database, postgres_server, scratch_dir, template_database


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope so that the session-scoped server and template fixtures share one event loop runner.
    return "asyncio"


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
