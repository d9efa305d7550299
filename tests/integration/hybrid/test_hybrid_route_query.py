"""route_query over real MCP against two scripted OpenAI-compatible servers (local and remote) on 127.0.0.1."""

from typing import Any

import asyncpg
import pytest
from mcp import Client

from mcp_servers.hybrid.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.hybrid.conftest import ScriptedLlm, SettingsFactory

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


async def route(settings: StackSettings, *calls: dict[str, Any]) -> list[Any]:
    """Call route_query once per argument set on one in-process server; return each result (data or error)."""
    server = create_server(build_core("hybrid", settings))
    results: list[Any] = []
    async with Client(server.mcp) as client:
        for arguments in calls:
            result = await client.call_tool("route_query", arguments)
            results.append(result)
    return results


async def decisions(settings: StackSettings) -> list[asyncpg.Record]:
    assert settings.postgres.dsn is not None
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        return await conn.fetch("SELECT * FROM hybrid_routing_decisions ORDER BY id")
    finally:
        await conn.close()


async def test_simple_prompt_is_answered_locally_and_recorded(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    settings = hybrid_settings()
    [result] = await route(settings, {"prompt": "What is 2+2?"})
    data = result.structured_content
    assert not result.is_error and data["backend"] == "local" and data["reason"] == "local_first"
    assert data["text"] == "answer from local" and data["prompt_tokens"] == 20
    assert remote_llm.requests == []
    [row] = await decisions(settings)
    assert row["backend"] == "local" and row["reason"] == "local_first" and row["ok"]


async def test_local_error_falls_back_to_remote(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    local_llm.mode = "error"
    [result] = await route(hybrid_settings(), {"prompt": "hello"})
    data = result.structured_content
    assert data["backend"] == "remote" and data["reason"] == "fallback_after_local_first"
    assert [(a["backend"], a["outcome"], a["reason"]) for a in data["attempts"]] == [
        ("local", "error", "http_error"),
        ("remote", "ok", "answered"),
    ]


async def test_local_timeout_falls_back_to_remote(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    local_llm.mode = "hang"
    [result] = await route(hybrid_settings(local={"timeout_seconds": 0.3}), {"prompt": "hello"})
    data = result.structured_content
    assert data["backend"] == "remote" and data["attempts"][0]["reason"] == "timed_out"


async def test_open_breaker_skips_local_without_calling_it(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    local_llm.mode = "error"
    first, second = await route(hybrid_settings(breaker_threshold=1), {"prompt": "one"}, {"prompt": "two"})
    assert first.structured_content["backend"] == "remote"
    data = second.structured_content
    assert data["backend"] == "remote" and data["reason"] == "local_unavailable"
    assert data["attempts"][0] == {"backend": "local", "outcome": "skipped", "reason": "breaker_open"}
    assert len(local_llm.requests) == 1


async def test_prompt_over_local_context_goes_remote(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    settings = hybrid_settings(local={"context_window_tokens": 256})
    [result] = await route(settings, {"prompt": "word " * 400, "max_tokens": 64})
    data = result.structured_content
    assert data["backend"] == "remote" and data["reason"] == "context_overflow"
    assert local_llm.requests == []


async def test_forced_preferences(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    remote, local = await route(
        hybrid_settings(), {"prompt": "hi", "prefer": "remote"}, {"prompt": "hi", "prefer": "local"}
    )
    assert (remote.structured_content["backend"], remote.structured_content["reason"]) == ("remote", "prefer_remote")
    assert (local.structured_content["backend"], local.structured_content["reason"]) == ("local", "prefer_local")
    local_llm.mode = "error"
    [failed] = await route(hybrid_settings(), {"prompt": "hi", "prefer": "local"})
    assert failed.is_error and remote_llm.requests[-1]["messages"][-1]["content"] == "hi"
    assert len(remote_llm.requests) == 1  # prefer=local never escalated


async def test_complex_prompt_escalates_to_remote(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    prompt = (
        "Design an architecture and analyze the trade-offs step by step; compare strategies and prove why "
        "one is better? Plan the rollout?\n1. a\n2. b\n3. c\n4. d\n" * 3
    )
    [result] = await route(hybrid_settings(complexity_threshold=0.3, complexity_threshold_min=0.1), {"prompt": prompt})
    assert result.structured_content["reason"] == "complexity_over_threshold"
    assert result.structured_content["backend"] == "remote"


async def test_secret_is_never_sent_remote(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    settings = hybrid_settings(complexity_threshold=0.0, complexity_threshold_min=0.0)
    secret_prompt = f"Why does this key fail? Analyze step by step and compare:\n{PRIVATE_KEY}"
    preferred, escalated, flagged = await route(
        settings,
        {"prompt": secret_prompt, "prefer": "remote"},
        {"prompt": secret_prompt},
        {"prompt": "harmless words", "contains_secrets": True, "prefer": "remote"},
    )
    for result in (preferred, escalated, flagged):
        assert result.structured_content["backend"] == "local"
        assert result.structured_content["secret_detected"]
    local_llm.mode = "error"
    [failed] = await route(settings, {"prompt": secret_prompt})
    assert failed.is_error
    assert remote_llm.requests == []
    assert all("PRIVATE KEY" not in text for text in remote_llm.prompts())


async def test_budget_exhausted_stops_remote_and_missing_usage_fails_closed(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    remote_llm.mode = "no_usage"
    # One worst-case call costs (prompt + 1000) / 1000 * 1.0 ≈ 1.0; the budget holds just over one.
    settings = hybrid_settings(daily_budget=1.5, remote={"cost_per_1k_tokens": 1.0})
    first, second = await route(
        settings,
        {"prompt": "hi", "prefer": "remote", "max_tokens": 1000},
        {"prompt": "hi", "prefer": "remote", "max_tokens": 1000},
    )
    assert first.structured_content["backend"] == "remote"
    assert first.structured_content["cost"] >= 1.0  # no usage reported: charged the worst case
    data = second.structured_content
    assert data["backend"] == "local" and data["reason"] == "fallback_after_prefer_remote"
    assert {"backend": "remote", "outcome": "skipped", "reason": "budget_exhausted"} in data["attempts"]
    assert len(remote_llm.requests) == 1
    local_llm.mode = "error"
    [failed] = await route(settings, {"prompt": "hi", "prefer": "remote", "max_tokens": 1000})
    assert failed.is_error


async def test_json_schema_answer_is_parsed(
    hybrid_settings: SettingsFactory, local_llm: ScriptedLlm, remote_llm: ScriptedLlm
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    [result] = await route(hybrid_settings(), {"prompt": "Return JSON", "json_schema": schema})
    assert result.structured_content["parsed_json"]["answer"] == "local"
    assert local_llm.requests[0]["response_format"]["json_schema"]["schema"] == schema
