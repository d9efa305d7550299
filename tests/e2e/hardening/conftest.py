"""Hardening e2e fixtures: one fresh migrated database per module, shared by the server processes it starts."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_servers.shared.config import StackSettings, load_settings
from tests.pg_fixtures import fresh_database


@pytest.fixture(scope="module")
async def module_settings(
    pg_server: str, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StackSettings]:
    """Settings on a fresh migrated database kept for the whole module (server start-ups dominate, not tests)."""
    data_dir: Path = tmp_path_factory.mktemp("hardening") / "data"
    async with fresh_database(pg_server, pg_template) as dsn:
        yield load_settings(data_dir=data_dir, postgres={"dsn": dsn})
