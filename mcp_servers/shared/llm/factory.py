"""Build a ChatModel from one backend's settings (the API key file is read here, once, at start-up)."""

import anyio

from mcp_servers.shared.config import LlmBackendSettings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.llm.anthropic import AnthropicChat
from mcp_servers.shared.llm.openai_compat import OpenAICompatibleChat
from mcp_servers.shared.llm.port import ChatModel
from mcp_servers.shared.resilience.breaker import BreakerRegistry


async def read_api_key(backend: LlmBackendSettings) -> str | None:
    """The backend's API key: `api_key`, else the stripped content of `api_key_path`, else None."""
    if backend.api_key is not None:
        return backend.api_key.get_secret_value()
    if backend.api_key_path is None:
        return None
    try:
        return (await anyio.Path(backend.api_key_path).read_text(encoding="utf-8")).strip() or None
    except OSError as exc:
        raise ConfigurationError(
            f"backend {backend.name}: cannot read its api_key_path ({exc.strerror}); fix the path or permissions"
        ) from None


async def create_chat_model(backend: LlmBackendSettings, breakers: BreakerRegistry) -> ChatModel:
    """The adapter for `backend.protocol`; the caller owns it and must `close()` it."""
    api_key = await read_api_key(backend)
    if backend.protocol == "anthropic":
        return AnthropicChat(
            name=backend.name, base_url=backend.base_url, model=backend.model, breakers=breakers, api_key=api_key
        )
    return OpenAICompatibleChat(
        name=backend.name,
        base_url=backend.base_url,
        model=backend.model,
        breakers=breakers,
        api_key=api_key,
        json_mode=backend.json_mode,
    )
