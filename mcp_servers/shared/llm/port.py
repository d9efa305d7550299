"""The ChatModel port: chat messages in, one completion (text, token usage, latency) out."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

Role = Literal["system", "user", "assistant"]

# Hybrid says this when it has no LLM at all: a configuration state, not an outage (Ralph ends tasks on it, the
# dashboard shows a banner), so its callers recognise it in the tool error's text.
NO_LLM_CONFIGURED: Final = "no LLM backend is configured"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer. Token counts are None when the backend reported no usage (budgets then fail closed)."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    latency_seconds: float

    @property
    def total_tokens(self) -> int | None:
        """Prompt plus completion tokens, or None if either is unknown."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class ChatModel(Protocol):
    """A chat-completion backend (OpenAI-compatible or Anthropic Messages).

    Implementations wrap every call in their breaker, apply `timeout_seconds`, raise `DependencyUnavailable`
    for transport errors, timeouts, 5xx and 429, `InvalidRequest` when the backend rejects the request, and
    never block the event loop.
    """

    @property
    def name(self) -> str:
        """Backend name (also its breaker's dependency name suffix)."""
        ...

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: Mapping[str, Any] | None = None,
        timeout_seconds: float,
    ) -> Completion:
        """One chat completion; with `json_schema` the backend is asked to emit JSON matching it."""
        ...

    async def close(self) -> None:
        """Release the HTTP client."""
        ...
