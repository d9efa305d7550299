"""AIDB, the knowledge-base MCP server: `server.create_server` declares it; logic lives in the sibling modules."""
