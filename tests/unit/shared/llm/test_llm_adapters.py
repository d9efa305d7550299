"""The OpenAI-compatible and Anthropic adapters against scripted HTTP answers (httpx.MockTransport, no network)."""

import json
from collections.abc import Callable

import httpx
import pytest

from mcp_servers.shared.config import BreakerSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.llm.anthropic import AnthropicChat
from mcp_servers.shared.llm.openai_compat import OpenAICompatibleChat
from mcp_servers.shared.llm.port import ChatMessage
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState

pytestmark = pytest.mark.anyio

MESSAGES = [ChatMessage("system", "be brief"), ChatMessage("user", "hello")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def openai_answer(text: str = "hi", usage: dict[str, int] | None = None) -> dict[str, object]:
    body: dict[str, object] = {"model": "m1", "choices": [{"message": {"role": "assistant", "content": text}}]}
    if usage is not None:
        body["usage"] = usage
    return body


def make_openai(
    handler: Callable[[httpx.Request], httpx.Response], breakers: BreakerRegistry | None = None, **kwargs: object
) -> OpenAICompatibleChat:
    return OpenAICompatibleChat(
        name="local",
        base_url="http://llm.test/v1",
        model="m1",
        breakers=breakers or BreakerRegistry(BreakerSettings(failure_threshold=2)),
        api_key="k-123",
        transport=httpx.MockTransport(handler),
        **kwargs,  # type: ignore[arg-type]  # test-only passthrough of json_mode
    )


async def test_openai_completion_parses_text_usage_and_sends_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=openai_answer("hi", {"prompt_tokens": 7, "completion_tokens": 2}))

    model = make_openai(handler)
    completion = await model.complete(MESSAGES, max_tokens=16, temperature=0.0, timeout_seconds=5)
    await model.close()
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("hi", 7, 2)
    assert completion.total_tokens == 9
    assert seen[0].url.path == "/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer k-123"
    body = json.loads(seen[0].content)
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert body["max_tokens"] == 16 and "response_format" not in body


async def test_openai_missing_usage_is_reported_as_unknown() -> None:
    model = make_openai(lambda _: httpx.Response(200, json=openai_answer("x")))
    completion = await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=5)
    await model.close()
    assert completion.prompt_tokens is None and completion.total_tokens is None


@pytest.mark.parametrize(
    ("json_mode", "expected_type"), [("json_schema", "json_schema"), ("json_object", "json_object")]
)
async def test_openai_json_schema_is_sent_as_response_format(json_mode: str, expected_type: str) -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=openai_answer('{"a": 1}'))

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    model = make_openai(handler, json_mode=json_mode)
    await model.complete(MESSAGES, max_tokens=4, temperature=0.0, json_schema=schema, timeout_seconds=5)
    await model.close()
    response_format = bodies[0]["response_format"]
    assert isinstance(response_format, dict) and response_format["type"] == expected_type
    assert schema in (response_format.get("schema"), response_format.get("json_schema", {}).get("schema"))


async def test_openai_5xx_and_transport_errors_open_the_breaker() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503)
        raise httpx.ConnectError("refused", request=request)

    breakers = BreakerRegistry(BreakerSettings(failure_threshold=2, open_seconds=60))
    model = make_openai(handler, breakers)
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=5)
    assert model.breaker.state is BreakerState.OPEN
    with pytest.raises(DependencyUnavailable):
        await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=5)
    await model.close()
    assert calls == 2  # the open breaker refused the third call without a request


async def test_openai_4xx_is_invalid_request_and_not_a_breaker_failure() -> None:
    breakers = BreakerRegistry(BreakerSettings(failure_threshold=1))
    model = make_openai(lambda _: httpx.Response(400, json={"error": "too long"}), breakers)
    with pytest.raises(InvalidRequest):
        await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=5)
    await model.close()
    assert model.breaker.state is BreakerState.CLOSED


async def test_openai_malformed_body_is_dependency_unavailable() -> None:
    model = make_openai(lambda _: httpx.Response(200, json={"choices": []}))
    with pytest.raises(DependencyUnavailable):
        await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=5)
    await model.close()


async def test_openai_timeout_is_dependency_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    model = make_openai(handler)
    with pytest.raises(DependencyUnavailable):
        await model.complete(MESSAGES, max_tokens=4, temperature=0.0, timeout_seconds=0.5)
    await model.close()


async def test_anthropic_moves_system_to_top_level_and_reads_usage() -> None:
    bodies: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request)
        return httpx.Response(
            200,
            json={
                "model": "claude-x",
                "content": [{"type": "text", "text": "hello back"}],
                "usage": {"input_tokens": 11, "output_tokens": 3},
            },
        )

    model = AnthropicChat(
        name="remote",
        base_url="http://anthropic.test",
        model="claude-x",
        breakers=BreakerRegistry(BreakerSettings()),
        api_key="ak",
        transport=httpx.MockTransport(handler),
    )
    completion = await model.complete(MESSAGES, max_tokens=8, temperature=0.0, timeout_seconds=5)
    await model.close()
    request = bodies[0]
    body = json.loads(request.content)
    assert request.url.path == "/v1/messages" and request.headers["x-api-key"] == "ak"
    assert body["system"] == "be brief" and body["messages"] == [{"role": "user", "content": "hello"}]
    assert (completion.text, completion.prompt_tokens, completion.completion_tokens) == ("hello back", 11, 3)
