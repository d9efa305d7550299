"""Dashboard fixtures: the app served on a loopback port over a fresh database, with one admin and one viewer."""

from collections.abc import AsyncIterator

import pytest

from mcp_servers.dashboard.app import create_app
from mcp_servers.shared.config import StackSettings
from tests.integration.dashboard.dashboard_support import create_user
from tests.support import free_port, serve_app


@pytest.fixture
def dashboard_settings(stack_settings: StackSettings) -> StackSettings:
    """No stack server runs here: the dashboard points at closed ports (they show as down)."""
    unused = {f"{name}_url": f"http://127.0.0.1:{free_port()}" for name in ("aidb", "hybrid", "ralph")}
    return stack_settings.model_copy(
        update={
            "dashboard": stack_settings.dashboard.model_copy(
                update={**unused, "login_burst": 3, "login_attempts_per_minute": 1.0, "sample_seconds": 0.5}
            )
        }
    )


@pytest.fixture
async def dashboard_url(dashboard_settings: StackSettings) -> AsyncIterator[str]:
    await create_user(dashboard_settings, "alice", "admin")
    await create_user(dashboard_settings, "victor", "viewer")
    async with serve_app(create_app(dashboard_settings)) as url:
        yield url
