"""AIDB: the knowledge-base MCP server.

Offers: `stats` (more tools land with the AIDB issue). Depends on PostgreSQL (documents, the source of
truth), a vector index (Qdrant Edge or a Qdrant server) and a sentence embedder. Failures the model can act
on (unknown id, dependency down: retry later) come back as tool errors; unknown tools, missing scopes and
rate limits are JSON-RPC errors.
"""

from typing import Any

from mcp.server.mcpserver import Context

from mcp_servers.aidb.deps import AidbDeps, open_aidb
from mcp_servers.aidb.models import StatsResult
from mcp_servers.aidb.stats import collect_stats
from mcp_servers.shared.annotations import READ_ONLY
from mcp_servers.shared.harness import Core, StackServer

INSTRUCTIONS = "Knowledge base for agents: store documents and search them (dense + BM25 hybrid)."


def create_server(core: Core) -> StackServer[AidbDeps]:
    """Build the AIDB server; nothing is opened until a transport starts it."""
    server = StackServer(core, instructions=INSTRUCTIONS, open_deps=open_aidb, title="AIDB knowledge base")

    @server.tool("stats", annotations=READ_ONLY)
    async def stats(ctx: Context[AidbDeps, Any]) -> StatsResult:
        """Counts of stored documents and indexed chunks, and which engines serve them. Cheap; call any time."""
        return await collect_stats(ctx.request_context.lifespan_context)

    return server
