"""Live configuration: validated writes with an audit trail, applied by running servers without a restart."""

import logging

import anyio
import pytest
from mcp import Client

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import MemoryRateLimiter
from mcp_servers.shared.runtime_config import RuntimeConfig, RuntimeConfigStore
from tests.integration.test_harness import build_echo_server
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_set_validates_with_the_settings_models_and_audits_old_and_new(stack_settings: StackSettings) -> None:
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        store = RuntimeConfigStore(database)
        assert await store.set(stack_settings, "rate_limit.burst", "5", actor="alice") == (60, 5)
        assert await store.set(stack_settings, "rate_limit.burst", 7, actor="bob") == (5, 7)
        for key, value in [("rate_limit.burst", 0), ("observability.log_level", "LOUD"), ("postgres.dsn", "x")]:
            with pytest.raises(InvalidRequest):
                await store.set(stack_settings, key, value, actor="alice")
        assert await store.load() == {"rate_limit.burst": 7}
        audit = await store.audit()
        assert [(e.actor, e.action, e.target, e.old_value, e.new_value) for e in audit] == [
            ("bob", "config.set", "rate_limit.burst", 5, 7),
            ("alice", "config.set", "rate_limit.burst", 60, 5),
        ]


async def test_running_server_applies_changes_without_restart(stack_settings: StackSettings) -> None:
    server = build_echo_server(stack_settings)
    root = logging.getLogger()
    level = root.level
    try:
        async with Client(server.mcp):
            async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
                store = RuntimeConfigStore(database)
                await store.set(stack_settings, "rate_limit.calls_per_minute", 30, actor="t")
                await store.set(stack_settings, "rate_limit.burst", 2, actor="t")
                await store.set(stack_settings, "hybrid.checkpoint_every_events", 17, actor="t")
                await store.set(stack_settings, "observability.log_level", "ERROR", actor="t")

            async def applied() -> bool:
                return bool(server.core.runtime.value("observability.log_level") == "ERROR")

            await wait_until(applied, timeout=10)
            limit = server.core.limiter.limit
            assert (limit.calls_per_minute, limit.burst) == (30, 2)
            assert server.core.runtime.effective.hybrid.checkpoint_every_events == 17
            assert root.level == logging.ERROR
    finally:
        root.setLevel(level)


async def test_poll_fallback_applies_changes_without_notifications(stack_settings: StackSettings) -> None:
    limiter = MemoryRateLimiter(stack_settings.rate_limit)
    runtime = RuntimeConfig(stack_settings, limiter, poll_seconds=0.1)
    breakers = BreakerRegistry(stack_settings.breaker)
    async with open_database(stack_settings, breakers) as database, anyio.create_task_group() as tg:
        tg.start_soon(lambda: runtime.run(database, breakers, listen=False))
        await RuntimeConfigStore(database).set(stack_settings, "rate_limit.enabled", False, actor="t")

        async def applied() -> bool:
            return not limiter.limit.enabled

        await wait_until(applied, timeout=10)
        # A value that stopped validating (written around the store) is skipped; the rest stay in force.
        await database.execute("UPDATE runtime_config SET value = 'true' WHERE key = 'rate_limit.enabled'")
        await database.execute(
            "INSERT INTO runtime_config (key, value) VALUES ('rate_limit.burst', '-3'), ('unknown.key', '1')"
        )
        version = runtime.version

        async def reapplied() -> bool:
            return runtime.version > version

        await wait_until(reapplied, timeout=10)
        assert limiter.limit.enabled
        assert limiter.limit.burst == stack_settings.rate_limit.burst
        tg.cancel_scope.cancel()
