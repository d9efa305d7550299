"""Anthropic Messages API (`POST {base_url}/v1/messages`) as a ChatModel.

System messages become the top-level `system` field. The Messages API has no response_format, so a JSON schema
is passed as an instruction; callers validate the JSON they get back either way.
"""

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from mcp_servers.shared.llm._http import UpstreamError, llm_breaker, new_client, post_json, usage_tokens
from mcp_servers.shared.llm.port import ChatMessage, Completion
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

API_VERSION = "2023-06-01"


def _parse(payload: Any) -> tuple[str, Mapping[str, Any]]:
    try:
        blocks = payload["content"]
        text = "".join(block["text"] for block in blocks if block.get("type") == "text")
    except (KeyError, TypeError, AttributeError):
        raise UpstreamError(0) from None
    if not isinstance(payload, Mapping):
        raise UpstreamError(0)
    return text, payload


class AnthropicChat:
    """A ChatModel over the Anthropic Messages API."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        breakers: BreakerRegistry,
        api_key: str | None = None,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._model = model
        self.breaker: CircuitBreaker = llm_breaker(breakers, name)
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        self._client = new_client(base_url, headers, connect_timeout_seconds, max_connections, transport)

    @property
    def name(self) -> str:
        return self._name

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: Mapping[str, Any] | None = None,
        timeout_seconds: float,
    ) -> Completion:
        """One Messages call through the breaker (errors as in the OpenAI-compatible adapter)."""
        system = [message.content for message in messages if message.role == "system"]
        if json_schema is not None:
            system.append("Answer with JSON only, matching this JSON schema:\n" + json.dumps(json_schema))
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "messages": [
                {"role": message.role, "content": message.content} for message in messages if message.role != "system"
            ],
        }
        if system:
            body["system"] = "\n\n".join(system)
        started = time.perf_counter()
        text, payload = await post_json(
            self._client,
            self.breaker,
            backend=self._name,
            path="/v1/messages",
            body=body,
            timeout_seconds=timeout_seconds,
            parse=_parse,
        )
        return Completion(
            text=text,
            prompt_tokens=usage_tokens(payload, "input_tokens"),
            completion_tokens=usage_tokens(payload, "output_tokens"),
            model=str(payload.get("model") or self._model),
            latency_seconds=time.perf_counter() - started,
        )

    async def close(self) -> None:
        await self._client.aclose()
