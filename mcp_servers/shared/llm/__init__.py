"""LLM clients: the ChatModel port and its OpenAI-compatible and Anthropic Messages adapters."""

from mcp_servers.shared.llm.port import ChatMessage, ChatModel, Completion

__all__ = ["ChatMessage", "ChatModel", "Completion"]
