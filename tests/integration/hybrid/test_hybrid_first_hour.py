"""Issue 16's Hybrid papercuts over real MCP: augment_query scoped to an AIDB project, update_outcome recorded
once, thresholds as written (not float4 noise), and a budget message that says what actually happened."""

from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.hybrid.conftest import ScriptedLlm, SettingsFactory
from tests.integration.hybrid.test_hybrid_with_aidb import issue_key
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PYTHON_DOC = "# Python virtual environments\nCreate one with python -m venv .venv and activate it before pip install."
OTHER_DOC = "# Garden irrigation\nWater the tomato beds with drip lines; python snakes live under the shed."


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content = result.structured_content
    assert isinstance(content, dict)
    return content


async def test_augment_query_reads_one_aidb_project_by_the_same_rule_as_search(
    hybrid_settings: SettingsFactory,
) -> None:
    base = hybrid_settings()
    aidb = create_aidb(build_core("aidb", base))
    token = await issue_key(base, ["aidb:read"])
    async with serve_app(aidb.http_app()) as aidb_url, Client(aidb.mcp) as aidb_client:
        data(await aidb_client.call_tool("store_document", {"content": PYTHON_DOC}))  # project "default"
        data(await aidb_client.call_tool("store_document", {"content": OTHER_DOC, "project": "garden"}))
        hybrid_section = base.hybrid.model_copy(
            update={"aidb_url": f"{aidb_url}/mcp", "aidb_api_key": SecretStr(token)}
        )
        hybrid = create_server(build_core("hybrid", base.model_copy(update={"hybrid": hybrid_section})))
        query = {"query": "python venv pip install", "agent_type": "remote"}

        async with Client(hybrid.mcp) as client:

            async def aidb_texts(**extra: Any) -> list[str]:
                result = data(await client.call_tool("augment_query", {**query, **extra}))
                assert result["aidb_used"], result["notes"]
                return [item["text"] for item in result["context"] if item["source"] == "aidb"]

            default = await aidb_texts()
            garden = await aidb_texts(project="garden")
            every = await aidb_texts(project="*")
    assert any("venv" in text for text in default) and not any("tomato" in text for text in default)
    assert any("tomato" in text for text in garden) and not any("venv" in text for text in garden)
    assert any("venv" in text for text in every) and any("tomato" in text for text in every)


async def test_a_second_update_outcome_repeats_or_is_refused_never_rescored(
    hybrid_settings: SettingsFactory,
) -> None:
    server = create_server(build_core("hybrid", hybrid_settings()))
    async with Client(server.mcp) as client:
        tracked = data(
            await client.call_tool(
                "track_interaction",
                {"query": "what is 2 + 2?", "response": "4", "agent_type": "local", "model_used": "m"},
            )
        )
        args = {"interaction_id": tracked["interaction_id"], "outcome": "partial", "user_feedback": 0.3}
        first = data(await client.call_tool("update_outcome", args))
        # Storing a pattern or the first outcome would change novelty; a repeat reports what was recorded.
        again = data(await client.call_tool("update_outcome", args))
        changed = await client.call_tool("update_outcome", {**args, "outcome": "success"})
        other_feedback = await client.call_tool("update_outcome", {**args, "user_feedback": -1.0})
        stats = data(await client.call_tool("learning_stats", {}))
    assert again["value_score"] == first["value_score"] and again["value_score"] == round(again["value_score"], 4)
    assert not again["training_example_added"] and again["threshold"] is None
    for refused in (changed, other_feedback):
        assert refused.is_error
        assert "already has outcome 'partial' with feedback 0.3" in refused.content[0].text  # type: ignore[union-attr]
    assert stats["interactions_with_outcome"] == 1


async def test_thresholds_read_back_as_written(hybrid_settings: SettingsFactory, local_llm: ScriptedLlm) -> None:
    settings = hybrid_settings(threshold_step=0.05)  # 0.6 - 0.05 = 0.55, which float4 cannot hold exactly
    async with Client(create_server(build_core("hybrid", settings)).mcp) as client:
        routed = data(await client.call_tool("route_query", {"prompt": "What is the capital of France?"}))
        outcome = data(
            await client.call_tool("update_outcome", {"interaction_id": routed["interaction_id"], "outcome": "failure"})
        )
    assert outcome["threshold"] == 0.55
    # A new process loads the thresholds from PostgreSQL's real column.
    async with Client(create_server(build_core("hybrid", settings)).mcp) as client:
        stats = data(await client.call_tool("learning_stats", {}))
    assert stats["thresholds"][routed["task_type"]] == 0.55
    assert all(value == round(value, 6) for value in stats["thresholds"].values())


async def test_budget_message_says_would_exceed_when_only_the_worst_case_does(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    # The local backend's window is too small for the second request, so only the budget decides it.
    settings: StackSettings = hybrid_settings(
        daily_budget=1.5, remote={"cost_per_1k_tokens": 1.0}, local={"context_window_tokens": 256}
    )
    async with Client(create_server(build_core("hybrid", settings)).mcp) as client:
        spent = data(await client.call_tool("route_query", {"prompt": "hi", "prefer": "remote", "max_tokens": 100}))
        assert spent["backend"] == "remote" and 0 < spent["cost"] < 1.5
        # A worst case of about 1.5 against what is left (a little less): too much, yet the budget is not spent.
        refused = await client.call_tool("route_query", {"prompt": "hi", "prefer": "remote", "max_tokens": 1499})
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert "would exceed" in text and "lower max_tokens" in text and "exhausted" not in text.split("(")[0]
