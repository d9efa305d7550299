"""Agent backends: what runs one iteration of a task (a CLI command, or Hybrid over MCP)."""

__all__: list[str] = []
