"""OpenAI-compatible chat completions (llama.cpp server, Ollama, vLLM, OpenAI) over one long-lived httpx client.

The adapter owns its `httpx.AsyncClient` (closed by `close()`) and uses its backend's breaker from the registry.
Transport errors, timeouts, 429 and 5xx open the breaker and surface as `DependencyUnavailable`; other 4xx
surface as `InvalidRequest` and do not count against the backend.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx

from mcp_servers.shared.llm._http import HttpChat, UpstreamError
from mcp_servers.shared.llm.port import ChatMessage, Completion
from mcp_servers.shared.resilience.breaker import BreakerRegistry

# `json_schema` is OpenAI's structured-output form; `json_object` with an inline `schema` is what
# llama-cpp-python's server understands.
JsonMode = Literal["json_schema", "json_object"]


def _parse(payload: Any) -> tuple[str, Mapping[str, Any]]:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError(0) from None
    if not isinstance(payload, Mapping) or not isinstance(content, str):
        raise UpstreamError(0)
    return content, payload


class OpenAICompatibleChat(HttpChat):
    """A ChatModel speaking `POST {base_url}/chat/completions` (base_url ends in /v1 by convention)."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        breakers: BreakerRegistry,
        api_key: str | None = None,
        json_mode: JsonMode = "json_schema",
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._json_mode = json_mode
        super().__init__(
            name=name,
            base_url=base_url,
            model=model,
            breakers=breakers,
            api_key=api_key,
            connect_timeout_seconds=connect_timeout_seconds,
            max_connections=max_connections,
            transport=transport,
        )

    def _headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request_body(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of one chat-completion request."""
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": message.role, "content": message.content} for message in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }
        if json_schema is not None:
            if self._json_mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "response", "schema": dict(json_schema), "strict": True},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": dict(json_schema)}
        return body

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: Mapping[str, Any] | None = None,
        timeout_seconds: float,
    ) -> Completion:
        """One chat completion through the breaker; see the module docstring for the error mapping."""
        body = self.request_body(messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema)
        return await self._post_completion(
            "/chat/completions",
            body,
            timeout_seconds=timeout_seconds,
            parse=_parse,
            usage_keys=("prompt_tokens", "completion_tokens"),
        )
