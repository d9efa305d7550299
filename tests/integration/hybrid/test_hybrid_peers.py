"""Hybrid's links to AIDB and Ralph (shared.peers): refusals are answers, and each link keeps its own timeout."""

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.resilience.breaker import BreakerState
from tests.integration.hybrid.conftest import SettingsFactory
from tests.integration.peer_support import REFUSAL, build_peer_server
from tests.integration.test_harness import issue_key
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_aidb_tool_errors_and_rate_limits_are_notes_and_never_open_the_aidb_breaker(
    hybrid_settings: SettingsFactory,
) -> None:
    base = hybrid_settings(breaker_threshold=1)
    _, token = await issue_key(base, ["read"])
    release = anyio.Event()
    limited = base.model_copy(update={"rate_limit": base.rate_limit.model_copy(update={"calls_per_minute": 0.01})})
    peer = build_peer_server(
        limited.model_copy(update={"rate_limit": limited.rate_limit.model_copy(update={"burst": 2})}), release
    )
    async with serve_app(peer.http_app()) as url:
        settings = hybrid_settings(
            breaker_threshold=1, aidb_url=f"{url}/mcp", aidb_api_key=SecretStr(token), aidb_search_tool="refuse"
        )
        hybrid = create_server(build_core("hybrid", settings))
        async with Client(hybrid.mcp) as client:
            notes = []
            for _ in range(4):
                result = await client.call_tool("augment_query", {"query": "billing"})
                assert not result.is_error and not result.structured_content["aidb_used"]
                notes += result.structured_content["notes"]
            aidb = hybrid.deps.aidb
            assert aidb is not None and aidb.breaker is not None
            assert aidb.breaker.state is BreakerState.CLOSED
    # The burst of 2 covers the `refuse` calls (tool errors); the rest are refused by the rate limit.
    assert sum(REFUSAL in note for note in notes) == 2
    assert sum("rate limit" in note for note in notes) == 2


async def test_the_ralph_link_has_its_own_timeout_not_aidbs(hybrid_settings: SettingsFactory) -> None:
    base = hybrid_settings()
    _, token = await issue_key(base, ["read"])
    release = anyio.Event()
    ralph_like = build_peer_server(base, release)
    async with serve_app(ralph_like.http_app()) as url:
        settings = hybrid_settings(
            ralph_url=f"{url}/mcp", ralph_api_key=SecretStr(token), aidb_timeout_seconds=600, ralph_timeout_seconds=0.3
        )
        hybrid = create_server(build_core("hybrid", settings))
        async with Client(hybrid.mcp):
            ralph = hybrid.deps.ralph
            assert ralph is not None
            # With AIDB's 600 s, this would still be waiting when the 10 s deadline fails the test.
            with anyio.fail_after(10), pytest.raises(DependencyUnavailable) as slow:
                await ralph.call_tool("hang", {})
        release.set()
    assert "timed out" in str(slow.value)
