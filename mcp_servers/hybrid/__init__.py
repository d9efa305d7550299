"""Hybrid: the LLM coordinator MCP server (built by `server.create_server`; nothing here is imported elsewhere)."""

__all__: list[str] = []
