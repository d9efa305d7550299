"""AIDB, the knowledge-base MCP server: `server.create_server` declares it; logic lives in the sibling modules."""

__all__: list[str] = []
