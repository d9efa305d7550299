"""End to end with a real local LLM: llama.cpp server (llama-cpp-python) running Gemma 3 270M, routed by Hybrid."""

import subprocess
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import Process
from mcp import Client

from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.config import HybridSettings, LlmBackendSettings, StackSettings
from mcp_servers.shared.harness import build_core
from tests.support import free_port, wait_http_ok
from tests.tools import gemma_model_path, llama_server_command

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
async def llama_url() -> AsyncIterator[str]:
    """A llama.cpp server on 127.0.0.1 with the Gemma model; stopped after the test."""
    port = free_port()
    process: Process = await anyio.open_process(
        llama_server_command(gemma_model_path(), port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/v1/models", timeout=120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def llama_settings(stack_settings: StackSettings, url: str) -> StackSettings:
    backend = LlmBackendSettings(
        name="gemma",
        kind="local",
        base_url=url,
        model="gemma3-270m",
        context_window_tokens=2048,
        timeout_seconds=120,
        json_mode="json_object",  # what llama-cpp-python's server accepts for schema-constrained output
    )
    return stack_settings.model_copy(update={"hybrid": HybridSettings(backends=[backend], pipeline_enabled=False)})


async def test_route_query_answers_through_llama_cpp_and_json_schema_output_parses(
    stack_settings: StackSettings, llama_url: str
) -> None:
    server = create_server(build_core("hybrid", llama_settings(stack_settings, llama_url)))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    async with Client(server.mcp) as client:
        plain = await client.call_tool(
            "route_query", {"prompt": "Name one colour of the sky.", "max_tokens": 24, "temperature": 0.0}
        )
        structured = await client.call_tool(
            "route_query",
            {
                "prompt": "Give the capital city of France and its country as JSON.",
                "max_tokens": 64,
                "temperature": 0.0,
                "json_schema": schema,
            },
        )
        stats = (await client.call_tool("learning_stats", {})).structured_content
    answer = plain.structured_content
    assert not plain.is_error and answer["backend"] == "gemma" and answer["reason"] == "local_first"
    assert answer["text"].strip() and answer["completion_tokens"] and answer["completion_tokens"] > 0
    parsed = structured.structured_content["parsed_json"]
    assert isinstance(parsed, dict) and isinstance(parsed["city"], str) and isinstance(parsed["country"], str)
    assert stats["routing_decisions"] == 2


async def test_pattern_extraction_uses_the_local_llm_with_a_schema(
    stack_settings: StackSettings, llama_url: str
) -> None:
    settings = llama_settings(stack_settings, llama_url)
    server = create_server(build_core("hybrid", settings))
    async with Client(server.mcp) as client:
        tracked = await client.call_tool(
            "track_interaction",
            {
                "query": "How do I reverse a list in Python?",
                "response": "Use reversed(items) for an iterator or items[::-1] for a new list.\n1. reversed\n2. slice",
                "agent_type": "local",
                "model_used": "gemma3-270m",
            },
        )
        interaction_id = tracked.structured_content["interaction_id"]
        outcome = await client.call_tool(
            "update_outcome", {"interaction_id": interaction_id, "outcome": "success", "user_feedback": 1.0}
        )
        pattern_id = outcome.structured_content["pattern_id"]
        assert pattern_id is not None
        row = await server.database.fetchrow(
            "SELECT extractor, problem_type FROM hybrid_patterns WHERE id = $1::uuid", pattern_id
        )
    assert row is not None and row["extractor"] == "llm:gemma" and row["problem_type"]
