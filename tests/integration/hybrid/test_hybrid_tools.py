"""Every Hybrid tool over real MCP (in-process and Streamable HTTP in both eras), and /learning/stats."""

import json

import anyio
import httpx
import pytest
from mcp import Client, MCPError

from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.hybrid.conftest import ScriptedLlm, SettingsFactory
from tests.support import bind_loopback, http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ERAS = ["legacy", "2026-07-28"]
ANSWER = (
    "Use sorted(items, key=len) to sort by length:\n1. call sorted\n2. pass key=len\n"
    "Prefer sorted over list.sort when you need a new list.\n```python\nsorted(items, key=len)\n```"
)


async def issue_key(settings: StackSettings, scopes: list[str]) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("test", scopes)).token


async def test_tools_are_listed_with_annotations(hybrid_settings: SettingsFactory) -> None:
    server = create_server(build_core("hybrid", hybrid_settings()))
    async with Client(server.mcp) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {
        "augment_query",
        "search_context",
        "route_query",
        "track_interaction",
        "update_outcome",
        "generate_training_data",
        "learning_stats",
    }
    assert tools["learning_stats"].annotations is not None and tools["learning_stats"].annotations.read_only_hint
    assert tools["route_query"].annotations is not None and tools["route_query"].annotations.open_world_hint
    assert tools["route_query"].output_schema is not None


async def test_learning_loop_tracks_scores_merges_patterns_and_exports_without_duplicates(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm
) -> None:
    settings = hybrid_settings()
    server = create_server(build_core("hybrid", settings))
    async with Client(server.mcp) as client:
        ids = []
        for _ in range(2):
            tracked = await client.call_tool(
                "track_interaction",
                {
                    "query": "How do I sort a list of strings by length in Python?",
                    "response": ANSWER,
                    "agent_type": "local",
                    "model_used": "local-model",
                    "context_ids": ["aidb:1"],
                },
            )
            assert not tracked.is_error
            ids.append(tracked.structured_content["interaction_id"])
        first = (
            await client.call_tool(
                "update_outcome", {"interaction_id": ids[0], "outcome": "success", "user_feedback": 1.0}
            )
        ).structured_content
        second = (
            await client.call_tool(
                "update_outcome", {"interaction_id": ids[1], "outcome": "success", "user_feedback": 1.0}
            )
        ).structured_content
        assert first["value_score"] >= 0.6 and first["pattern_id"] and not first["pattern_merged"]
        assert first["training_example_added"]
        assert second["pattern_merged"] and second["pattern_id"] == first["pattern_id"]
        assert not second["training_example_added"]  # identical example: deduplicated
        again = (
            await client.call_tool(
                "update_outcome", {"interaction_id": ids[1], "outcome": "success", "user_feedback": 1.0}
            )
        ).structured_content
        assert again["pattern_id"] == first["pattern_id"] and not again["pattern_merged"]

        hits = (
            await client.call_tool(
                "search_context", {"query": "sort strings by length", "collection": "skills-patterns"}
            )
        ).structured_content["hits"]
        assert hits and hits[0]["id"] == f"skills-patterns:{first['pattern_id']}"
        history = await client.call_tool(
            "search_context", {"query": "sort", "collection": "interaction-history", "limit": 2}
        )
        assert not history.is_error  # in-process callers are trusted (admin)

        exported = []
        for fmt in ("openai", "openai", "sharegpt"):
            exported.append((await client.call_tool("generate_training_data", {"format": fmt})).structured_content)
        stats = (await client.call_tool("learning_stats", {})).structured_content

    assert [e["examples_appended"] for e in exported] == [1, 0, 1]
    lines = (await anyio.Path(exported[0]["path"]).read_text(encoding="utf-8")).splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["messages"][1]["content"] == ANSWER
    sharegpt = json.loads(await anyio.Path(exported[2]["path"]).read_text(encoding="utf-8"))
    assert sharegpt["conversations"][0]["from"] == "human"
    assert stats["interactions"] == 2 and stats["patterns"] == 1 and stats["training_examples"] == 1
    assert stats["pipeline"]["lag_bytes"] == 0
    assert stats["dataset_files"] == {"openai": 1, "sharegpt": 1}


async def test_outcomes_adapt_the_routing_threshold(hybrid_settings: SettingsFactory, local_llm: ScriptedLlm) -> None:
    server = create_server(build_core("hybrid", hybrid_settings(threshold_step=0.1)))
    async with Client(server.mcp) as client:
        routed = (
            await client.call_tool("route_query", {"prompt": "What is the capital of France?"})
        ).structured_content
        outcome = (
            await client.call_tool("update_outcome", {"interaction_id": routed["interaction_id"], "outcome": "failure"})
        ).structured_content
        repeated = (
            await client.call_tool("update_outcome", {"interaction_id": routed["interaction_id"], "outcome": "failure"})
        ).structured_content
        stats = (await client.call_tool("learning_stats", {})).structured_content
    assert outcome["threshold"] == pytest.approx(0.5)
    assert repeated["threshold"] is None  # idempotent: a repeated outcome does not adapt again
    assert stats["thresholds"][routed["task_type"]] == pytest.approx(0.5)
    assert stats["routing_by_reason"] == {"local_first": 1}


async def test_unknown_interaction_is_a_tool_error(hybrid_settings: SettingsFactory) -> None:
    server = create_server(build_core("hybrid", hybrid_settings()))
    async with Client(server.mcp) as client:
        missing = await client.call_tool(
            "update_outcome", {"interaction_id": "00000000-0000-0000-0000-000000000000", "outcome": "success"}
        )
        garbage = await client.call_tool("update_outcome", {"interaction_id": "nope", "outcome": "success"})
    assert missing.is_error and garbage.is_error


async def test_augment_query_without_aidb_uses_own_collections(hybrid_settings: SettingsFactory) -> None:
    server = create_server(
        build_core("hybrid", hybrid_settings(aidb_url="http://127.0.0.1:9/mcp", aidb_timeout_seconds=2))
    )
    async with Client(server.mcp) as client:
        await client.call_tool(
            "track_interaction",
            {"query": "How to sort by length?", "response": ANSWER, "agent_type": "remote", "model_used": "m"},
        )
        result = await client.call_tool("augment_query", {"query": "sort a list by length", "agent_type": "remote"})
    data = result.structured_content
    assert not result.is_error and not data["aidb_used"]
    assert data["notes"] and data["notes"][0].startswith("aidb:")
    assert data["augmented_prompt"].endswith("sort a list by length")
    assert data["token_count"] > 0


@pytest.mark.parametrize("mode", ERAS)
async def test_http_read_key_cannot_search_interaction_history(hybrid_settings: SettingsFactory, mode: str) -> None:
    settings = hybrid_settings()
    token = await issue_key(settings, ["read"])
    server = create_server(build_core("hybrid", settings))
    async with serve_app(server.http_app()) as url, http_client(url, token, mode=mode) as client:
        allowed = await client.call_tool("search_context", {"query": "x", "collection": "best-practices"})
        with pytest.raises(MCPError) as refused:
            await client.call_tool("search_context", {"query": "x", "collection": "interaction-history"})
    assert not allowed.is_error
    assert refused.value.code == PERMISSION_DENIED


async def test_learning_stats_route_requires_a_key_and_metrics_count_decisions(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm
) -> None:
    base = hybrid_settings()
    sock = bind_loopback()
    settings = base.model_copy(update={"http": base.http.model_copy(update={"hybrid_port": sock.getsockname()[1]})})
    token = await issue_key(settings, ["write"])
    server = create_server(build_core("hybrid", settings))
    async with serve_app(server.http_app(), sock) as url, http_client(url, token) as client:
        assert not (await client.call_tool("route_query", {"prompt": "hi"})).is_error
        async with httpx.AsyncClient() as raw:
            anonymous = await raw.get(f"{url}/learning/stats")
            authorised = await raw.get(f"{url}/learning/stats", headers={"Authorization": f"Bearer {token}"})
            metrics = (await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert anonymous.status_code == 401
    assert authorised.status_code == 200
    assert 'mcpstack_llm_routing_decisions_total{backend="local",reason="local_first"} 1.0' in metrics
    assert 'mcpstack_outbound_request_duration_seconds_count{dependency="llm:local",operation="chat"} 1.0' in metrics
    body = authorised.json()
    assert body["pipeline"]["backpressure_threshold_bytes"] == settings.hybrid.backpressure_bytes
    assert "lag_bytes" in body["pipeline"] and "dedup_events" in body
