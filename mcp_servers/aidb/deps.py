"""AIDB's dependencies, opened once per process by the harness lifespan.

Owns the vector index, the embedder, the searcher (with its query cache) and the outbox indexer, which runs in
a task group for as long as the dependencies are open.
"""

import contextlib
import functools
import logging
import shlex
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio
from prometheus_client import CollectorRegistry, Counter

from mcp_servers.aidb.cache import GenerationCache
from mcp_servers.aidb.discovery import register_server
from mcp_servers.aidb.indexer import CHUNKS_COLLECTION, TOOLS_COLLECTION, Indexer
from mcp_servers.aidb.search import Ranking, Searcher
from mcp_servers.shared.background import background_tasks
from mcp_servers.shared.config import AidbSettings, StackSettings
from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.harness import Core, ReadinessCheck
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.factory import create_vector_index
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

_PEER_RETRY_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class AidbDeps:
    """What AIDB's tools use; owned by the lifespan that created it."""

    settings: StackSettings
    database: Database
    vectors: VectorIndex
    embedder: Embedder
    indexer: Indexer
    searcher: Searcher

    @property
    def aidb(self) -> AidbSettings:
        """AIDB's own settings section."""
        return self.settings.aidb

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        """Checks `/ready` runs besides PostgreSQL."""

        async def embedder_answers() -> None:
            await check_dimension(self.embedder, self.settings.embedder.dimension)

        return {"vectors": self.vectors.ping, "embedder": embedder_answers}


def _cache_counter(registry: CollectorRegistry) -> Counter:
    # The deps may be reopened in one process (legacy SSE); the registry keeps the first registration.
    existing = getattr(registry, "_names_to_collectors", {}).get("mcpstack_query_cache_requests_total")
    if isinstance(existing, Counter):
        return existing
    return Counter(
        "mcpstack_query_cache_requests_total",
        "Search ranking cache lookups",
        ["result"],
        registry=registry,
    )


def vector_settings(settings: StackSettings) -> StackSettings:
    """Settings whose vector path is AIDB's own directory (each server process needs its own Edge shards)."""
    path = settings.vector_path / "aidb"
    return settings.model_copy(update={"vectors": settings.vectors.model_copy(update={"path": path})})


async def _register_peers(deps: AidbDeps) -> None:
    """Index the tools of the configured peer servers, retrying each until it answers (they may start later)."""
    for name, target in deps.aidb.register_servers.items():
        is_url = target.startswith(("http://", "https://"))
        delay = 1.0
        while True:
            try:
                await register_server(
                    deps.database,
                    deps.vectors,
                    deps.embedder,
                    name,
                    url=target if is_url else None,
                    command=None if is_url else shlex.join(shlex.split(target)),
                    bearer=deps.aidb.peer_api_key.get_secret_value() if deps.aidb.peer_api_key else None,
                )
                logger.info("peer server registered", extra={"server_name": name})
                break
            except DependencyUnavailable:
                await anyio.sleep(delay)
                delay = min(delay * 2, _PEER_RETRY_MAX_SECONDS)
            except Exception:  # a bad peer entry must not take the knowledge base down
                logger.exception("peer server registration failed", extra={"server_name": name})
                break


@contextlib.asynccontextmanager
async def open_aidb(core: Core, database: Database) -> AsyncIterator[AidbDeps]:
    """Open the vector index and the embedder, check dimensions, start the indexer; close all on exit."""
    settings = core.settings
    dimension = settings.embedder.dimension
    embedder = create_embedder(settings, core.breakers)
    try:
        await check_dimension(embedder, dimension)
        # Building an adapter may open files (qdrant-client local mode loads its store): not on the event loop.
        vectors = await anyio.to_thread.run_sync(create_vector_index, vector_settings(settings), core.breakers)
        try:
            await vectors.ensure_collection(CHUNKS_COLLECTION, dimension)
            await vectors.ensure_collection(TOOLS_COLLECTION, dimension)
            counter = _cache_counter(core.metrics.registry)
            cache: GenerationCache[Ranking] = GenerationCache(
                settings.aidb.cache_ttl_seconds,
                settings.aidb.cache_max_entries,
                on_result=lambda hit: counter.labels("hit" if hit else "miss").inc(),
            )
            indexer = Indexer(
                database, vectors, batch=settings.aidb.indexer_batch, poll_seconds=settings.aidb.indexer_poll_seconds
            )
            searcher = Searcher(
                database,
                vectors,
                embedder,
                cache,
                max_candidates=settings.aidb.max_search_candidates,
                dense_weight=settings.aidb.hybrid_dense_weight,
                lexical_saturation=settings.aidb.hybrid_lexical_saturation,
            )
            deps = AidbDeps(settings, database, vectors, embedder, indexer, searcher)
            async with background_tasks("aidb") as background:
                background.start("indexer", indexer.run)
                if settings.aidb.register_servers:
                    background.start("register-peers", functools.partial(_register_peers, deps))
                yield deps
        finally:
            await vectors.close()
    finally:
        await embedder.close()
