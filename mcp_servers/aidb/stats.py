"""Knowledge-base statistics: PostgreSQL counts, the vector index size and cache effectiveness."""

from mcp_servers.aidb import store
from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.models import StatsResult
from mcp_servers.aidb.points import CHUNKS_COLLECTION


async def collect_stats(deps: AidbDeps) -> StatsResult:
    """Count documents, chunks, pending index work, projects and tools; read the index size."""
    counts = await store.counts(deps.database)
    cache = deps.searcher.cache
    return StatsResult(
        documents=counts.documents,
        chunks=counts.chunks,
        chunks_indexed=await deps.vectors.count(CHUNKS_COLLECTION),
        pending_index=counts.pending,
        projects=counts.projects,
        documents_by_kind=counts.by_kind,
        registered_servers=counts.servers,
        tools_indexed=counts.tools,
        vector_backend=deps.vectors.name,
        embedder=deps.embedder.name,
        chunks_by_embedder=counts.by_embedder,
        dimension=deps.embedder.dimension,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
    )
