"""augment_query with context from a real AIDB server over MCP (Streamable HTTP, bearer key), and AIDB going away."""

import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.hybrid.conftest import SettingsFactory
from tests.support import http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DOCUMENT = (
    "# Deploying the billing service\n\nThe billing service is deployed with `make deploy-billing`; it needs the "
    "BILLING_REGION variable and runs database migrations before switching traffic."
)


async def issue_key(settings: StackSettings, scopes: list[str]) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("hybrid-to-aidb", scopes)).token


async def test_augment_query_draws_context_from_aidb_over_mcp(hybrid_settings: SettingsFactory) -> None:
    base = hybrid_settings()
    aidb = create_aidb(build_core("aidb", base))
    token = await issue_key(base, ["aidb:read"])
    async with serve_app(aidb.http_app()) as aidb_url, Client(aidb.mcp) as aidb_client:
        stored = await aidb_client.call_tool("store_document", {"content": DOCUMENT, "title": "billing deploy"})
        assert not stored.is_error
        settings = base.model_copy(
            update={
                "hybrid": base.hybrid.model_copy(
                    update={"aidb_url": f"{aidb_url}/mcp", "aidb_api_key": SecretStr(token)}
                )
            }
        )
        hybrid = create_hybrid(build_core("hybrid", settings))
        async with Client(hybrid.mcp) as client:
            result = await client.call_tool(
                "augment_query", {"query": "how is the billing service deployed?", "agent_type": "remote"}
            )
    data = result.structured_content
    assert not result.is_error and data["aidb_used"], data["notes"]
    assert any(item["source"] == "aidb" and "make deploy-billing" in item["text"] for item in data["context"])
    assert any(context_id.startswith("aidb:") for context_id in data["context_ids"])
    assert "make deploy-billing" in data["augmented_prompt"]
    assert data["augmented_prompt"].endswith("Question: how is the billing service deployed?")


async def test_augment_query_with_a_bad_aidb_key_still_answers_with_a_note(hybrid_settings: SettingsFactory) -> None:
    base = hybrid_settings()
    aidb = create_aidb(build_core("aidb", base))
    async with serve_app(aidb.http_app()) as aidb_url:
        settings = base.model_copy(
            update={
                "hybrid": base.hybrid.model_copy(
                    update={"aidb_url": aidb_url, "aidb_api_key": SecretStr("mcps_bad_key")}
                )
            }
        )
        hybrid = create_hybrid(build_core("hybrid", settings))
        async with Client(hybrid.mcp) as client:
            result = await client.call_tool("augment_query", {"query": "billing"})
    assert not result.is_error
    assert not result.structured_content["aidb_used"] and result.structured_content["notes"]


async def test_augment_query_returns_aidb_content_only_to_a_caller_who_may_read_aidb(
    hybrid_settings: SettingsFactory,
) -> None:
    base = hybrid_settings()
    aidb = create_aidb(build_core("aidb", base))
    link_key = await issue_key(base, ["aidb:read"])
    hybrid_only = await issue_key(base, ["hybrid:read"])
    both = await issue_key(base, ["hybrid:read", "aidb:read"])
    async with serve_app(aidb.http_app()) as aidb_url, Client(aidb.mcp) as aidb_client:
        stored = await aidb_client.call_tool("store_document", {"content": DOCUMENT, "title": "billing deploy"})
        assert not stored.is_error
        # AIDB refuses the hybrid:read key itself ...
        async with http_client(aidb_url, hybrid_only) as direct:
            with pytest.raises(MCPError) as direct_refusal:
                await direct.call_tool("search", {"query": "billing"})
        assert direct_refusal.value.code == PERMISSION_DENIED
        settings = base.model_copy(
            update={
                "hybrid": base.hybrid.model_copy(
                    update={"aidb_url": f"{aidb_url}/mcp", "aidb_api_key": SecretStr(link_key)}
                )
            }
        )
        hybrid = create_hybrid(build_core("hybrid", settings))
        async with serve_app(hybrid.http_app()) as hybrid_url:
            # ... so Hybrid, which calls AIDB with its own key, refuses to relay AIDB to it.
            async with http_client(hybrid_url, hybrid_only) as client:
                with pytest.raises(MCPError) as relayed:
                    await client.call_tool("augment_query", {"query": "how is the billing service deployed?"})
                # Hybrid's own collections stay open to it.
                own = await client.call_tool("search_context", {"query": "billing", "collection": "best-practices"})
                assert not own.is_error
            assert relayed.value.code == PERMISSION_DENIED
            assert relayed.value.error.data == {"required_scope": "aidb:read"}
            async with http_client(hybrid_url, both) as client:
                allowed = await client.call_tool("augment_query", {"query": "how is the billing service deployed?"})
    assert not allowed.is_error and allowed.structured_content["aidb_used"]
    assert "make deploy-billing" in allowed.structured_content["augmented_prompt"]
