"""LLM backends, ingest roots and agent templates are live settings: a change reaches the next tool call of a
running server, without a restart."""

from pathlib import Path

import pytest
from mcp import Client
from mcp_types import CallToolResult

from mcp_servers.cli import build_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.runtime_config import RuntimeConfigStore
from tests.integration.hybrid.conftest import scripted_llm
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _set(settings: StackSettings, key: str, value: object) -> None:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        await RuntimeConfigStore(database).set(settings, key, value, actor="test")


async def _until_ok(client: Client, tool: str, arguments: dict[str, object]) -> CallToolResult:
    answers: list[CallToolResult] = []

    async def answered() -> bool:
        answers.append(await client.call_tool(tool, arguments))
        return not answers[-1].is_error

    await wait_until(answered, timeout=20, interval=0.2)
    return answers[-1]


async def test_llm_backends_change_live(stack_settings: StackSettings) -> None:
    settings = stack_settings.model_copy(
        update={"hybrid": stack_settings.hybrid.model_copy(update={"pipeline_enabled": False})}
    )
    server = build_server("hybrid", settings)
    async with scripted_llm("local") as llm, Client(server.mcp) as client:
        before = await client.call_tool("route_query", {"prompt": "What is 2+2?"})
        assert before.is_error
        backend = {"name": "local", "kind": "local", "base_url": llm.url, "model": "m", "timeout_seconds": 5}
        await _set(settings, "hybrid.backends", [backend])
        answer = await _until_ok(client, "route_query", {"prompt": "What is 2+2?"})
        assert answer.structured_content is not None
        assert answer.structured_content["backend"] == "local"
        assert answer.structured_content["text"] == "answer from local"
        await _set(settings, "hybrid.backends", [])

        async def off_again() -> bool:
            return (await client.call_tool("route_query", {"prompt": "What is 2+2?"})).is_error

        await wait_until(off_again, timeout=20, interval=0.2)
        with pytest.raises(InvalidRequest):  # secrets never go into the stored, audited settings
            await _set(settings, "hybrid.backends", [{**backend, "api_key": "sk-live"}])


async def test_ingest_roots_change_live(stack_settings: StackSettings, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Live roots\nIngest roots are a live setting.\n", encoding="utf-8")
    server = build_server("aidb", stack_settings)
    async with Client(server.mcp) as client:
        refused = await client.call_tool("ingest_path", {"path": str(notes)})
        assert refused.is_error
        await _set(stack_settings, "aidb.allowed_roots", [str(notes)])
        ingested = await _until_ok(client, "ingest_path", {"path": str(notes)})
        assert ingested.structured_content is not None
        assert ingested.structured_content["created"] == 1


async def test_agent_templates_change_live(stack_settings: StackSettings, tmp_path: Path) -> None:
    settings = stack_settings.model_copy(
        update={"ralph": stack_settings.ralph.model_copy(update={"workers": 0, "workspace_roots": [tmp_path]})}
    )
    server = build_server("ralph", settings)
    task = {"prompt": "say hi", "backend": "command", "workspace": str(tmp_path)}
    async with Client(server.mcp) as client:
        refused = await client.call_tool("submit_task", task)
        assert refused.is_error
        await _set(settings, "ralph.command_templates", {"default": ["true", "{prompt}"]})
        submitted = await _until_ok(client, "submit_task", task)
        assert submitted.structured_content is not None
        assert submitted.structured_content["status"] == "queued"
