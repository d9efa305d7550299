"""Optimisation proposals reach a real Ralph server over MCP as tasks that wait for approval; once only."""

import pytest
from mcp import Client
from pydantic import SecretStr

from mcp_servers.hybrid.proposals import find_proposals, submit_proposals
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.peers import PeerSpec, mcp_endpoint, open_peer
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_failing_tool_becomes_one_approval_task_in_ralph(stack_settings: StackSettings) -> None:
    breakers = BreakerRegistry(stack_settings.breaker)
    # Ralph offers its `hybrid` backend only with a Hybrid URL; the task waits for approval, so it is never called.
    ralph_settings = stack_settings.model_copy(
        update={"ralph": stack_settings.ralph.model_copy(update={"hybrid_url": "http://127.0.0.1:9/mcp"})}
    )
    ralph = create_ralph(build_core("ralph", ralph_settings))
    async with open_database(stack_settings, breakers) as database:
        token = (await KeyStore(database).create("hybrid-to-ralph", ["ralph:write"])).token
        await database.execute(
            """INSERT INTO hybrid_tool_stats (server, tool, calls, errors, duration_sum) VALUES
               ('aidb', 'ingest_path', 40, 30, 12.0), ('aidb', 'search', 100, 1, 2.0)"""
        )
        proposals = await find_proposals(database)
        assert [(p.kind, p.subject) for p in proposals] == [("tool_error_rate", "aidb/ingest_path")]
        async with serve_app(ralph.http_app()) as url:
            async with open_peer(PeerSpec("ralph", mcp_endpoint(url), SecretStr(token), 10), breakers) as ralph_peer:
                assert await submit_proposals(database, ralph_peer, proposals) == 1
                assert await submit_proposals(database, ralph_peer, await find_proposals(database)) == 0
            async with Client(ralph.mcp) as ralph_client:
                listed = (await ralph_client.call_tool("list_tasks", {})).structured_content
        row = await database.fetchrow("SELECT status, ralph_task_id FROM hybrid_proposals")
    assert row is not None and row["status"] == "submitted" and row["ralph_task_id"]
    [task] = [task for task in listed["tasks"] if task["id"] == row["ralph_task_id"]]
    assert task["status"] == "awaiting_approval"


async def test_without_ralph_proposals_are_recorded_as_skipped(stack_settings: StackSettings) -> None:
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        await database.execute(
            "INSERT INTO hybrid_tool_stats (server, tool, calls, errors, duration_sum) VALUES ('x', 'slow', 20, 0, 200)"
        )
        assert await submit_proposals(database, None, await find_proposals(database)) == 1
        row = await database.fetchrow("SELECT kind, status FROM hybrid_proposals")
    assert row is not None and (row["kind"], row["status"]) == ("tool_latency", "skipped")
