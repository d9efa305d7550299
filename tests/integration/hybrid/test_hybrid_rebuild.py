"""A Hybrid start rebuilds collections that lack points for rows PostgreSQL holds (a restore without vectors)."""

import logging
from typing import Any

import pytest
from mcp import Client

from mcp_servers.hybrid import knowledge
from mcp_servers.hybrid.deps import HybridDeps
from mcp_servers.hybrid.rebuild import rebuild_missing
from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.hybrid.conftest import ScriptedLlm, SettingsFactory
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ERROR_QUERY = "KeyError: 'timeout' raised when loading the glacier config in Python"
ERROR_ANSWER = (
    "Read the glacier config with a default so a missing key cannot raise:\n1. load the file\n"
    "2. call config.get('timeout', 30)\nPrefer get over indexing for optional settings.\n"
    "```python\ntimeout = config.get('timeout', 30)\n```"
)
PLAIN_QUERY = "How do I sort a list of strings by length in Python?"
PLAIN_ANSWER = "Use sorted(items, key=len) to sort by length. It returns a new list."

SEARCHES = {
    "interaction-history": "sort strings by length",
    "error-solutions": "KeyError timeout glacier config",
    "skills-patterns": "glacier config timeout",
    "best-practices": "glacier config timeout",
}


async def _counts(deps: HybridDeps) -> dict[str, int]:
    return {name: await deps.vectors.count(engine) for name, engine in knowledge.COLLECTIONS.items()}


async def _top_hits(client: Client) -> dict[str, dict[str, Any]]:
    found = {}
    for collection, query in SEARCHES.items():
        result = await client.call_tool("search_context", {"query": query, "collection": collection, "limit": 1})
        assert not result.is_error, result
        hits = result.structured_content["hits"]
        assert hits, collection
        found[collection] = {"id": hits[0]["id"], "text": hits[0]["text"]}
    return found


async def test_a_start_rebuilds_collections_missing_from_the_index(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_servers.hybrid.rebuild")
    settings = hybrid_settings()
    first: StackServer[HybridDeps] = create_server(build_core("hybrid", settings))
    async with Client(first.mcp) as client:
        ids = {}
        for query, answer in ((ERROR_QUERY, ERROR_ANSWER), (PLAIN_QUERY, PLAIN_ANSWER)):
            tracked = await client.call_tool(
                "track_interaction",
                {"query": query, "response": answer, "agent_type": "local", "model_used": "local-model"},
            )
            ids[query] = tracked.structured_content["interaction_id"]
        outcome = await client.call_tool(
            "update_outcome", {"interaction_id": ids[ERROR_QUERY], "outcome": "success", "user_feedback": 1.0}
        )
        assert outcome.structured_content["value_score"] >= knowledge.BEST_PRACTICE_VALUE
        pattern_id = outcome.structured_content["pattern_id"]
        before = await _counts(first.deps)
        assert before == {
            "interaction-history": 2,
            "error-solutions": 1,
            "skills-patterns": 1,
            "best-practices": 1,
        }
        hits_before = await _top_hits(client)
        # What a restore of a backup taken while Hybrid ran leaves: PostgreSQL holds the rows, the index does not.
        for engine in knowledge.COLLECTIONS.values():
            await first.deps.vectors.drop(engine)
    assert hits_before["skills-patterns"]["id"] == f"skills-patterns:{pattern_id}"
    assert hits_before["error-solutions"]["id"] == f"error-solutions:{ids[ERROR_QUERY]}"
    assert hits_before["interaction-history"]["id"] == f"interaction-history:{ids[PLAIN_QUERY]}"

    second: StackServer[HybridDeps] = create_server(build_core("hybrid", settings))
    async with Client(second.mcp) as client:

        async def caught_up() -> bool:
            return await _counts(second.deps) == before

        await wait_until(caught_up, timeout=60)
        # Same ids (deterministic) and the same texts as the tools wrote.
        assert await _top_hits(client) == hits_before
        # Idempotent: once rebuilt, another check writes nothing.
        assert await rebuild_missing(second.deps.database, second.deps.vectors, second.deps.embedder) == {}
        assert await _counts(second.deps) == before
    progress = [r for r in caplog.records if r.getMessage() == "rebuilding hybrid collections"]
    assert progress
    assert getattr(progress[-1], "points_done", None) == getattr(progress[-1], "points_total", None) == 5
