"""Ralph: the durable autonomous agent loop (MCP server `create_server`, worker process `run_workers`).

Other packages reach it only through `mcp-stack` (by module name) and over MCP.
"""

__all__: list[str] = []
