"""Anthropic Messages API (`POST {base_url}/v1/messages`) as a ChatModel.

System messages become the top-level `system` field. The Messages API has no response_format, so a JSON schema
is passed as an instruction; callers validate the JSON they get back either way.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_servers.shared.llm._http import HttpChat, UpstreamError
from mcp_servers.shared.llm.port import ChatMessage, Completion

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


class AnthropicChat(HttpChat):
    """A ChatModel over the Anthropic Messages API."""

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

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
        return await self._post_completion(
            "/v1/messages",
            body,
            timeout_seconds=timeout_seconds,
            parse=_parse,
            usage_keys=("input_tokens", "output_tokens"),
        )
