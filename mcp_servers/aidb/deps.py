"""AIDB's dependencies, opened once per process by the harness lifespan.

Owns the vector index, the embedder, the searcher (with its query cache), the outbox indexer, which runs in
a task group for as long as the dependencies are open, and the MCP task store in whose task group
`ingest_path`/`reindex` run when a client asks for them as tasks (mcp_tasks.py).
"""

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter

from mcp_servers.aidb.cache import GenerationCache
from mcp_servers.aidb.discovery import Targets, is_url, register_server
from mcp_servers.aidb.indexer import Indexer, Lacking, index_lacks, reindex_missing
from mcp_servers.aidb.own_tools import index_own_tools
from mcp_servers.aidb.points import CHUNKS_COLLECTION, TOOLS_COLLECTION
from mcp_servers.aidb.search import Ranking, Searcher
from mcp_servers.shared.background import background_tasks
from mcp_servers.shared.config import AidbSettings, StackSettings
from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import DependencyUnavailable, RateLimited
from mcp_servers.shared.harness import Core, ReadinessCheck
from mcp_servers.shared.memory_tasks import MemoryTaskStore
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.factory import create_vector_index
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

_PEER_RETRY_MAX_SECONDS = 60.0

OwnTools = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]
"""The server's own tool list (MCP tool dicts), for find_tools."""


@dataclass(frozen=True, slots=True)
class AidbDeps:
    """What AIDB's tools use; owned by the lifespan that created it."""

    settings: StackSettings
    database: Database
    vectors: VectorIndex
    embedder: Embedder
    indexer: Indexer
    searcher: Searcher
    tasks: MemoryTaskStore
    """ingest_path/reindex running as MCP tasks; their work is cancelled when the dependencies close."""
    live: Callable[[], StackSettings] | None = None
    """The settings in force (live overrides applied); unset = `settings`."""

    @property
    def aidb(self) -> AidbSettings:
        """AIDB's own settings section, live overrides (the ingest roots) applied."""
        return (self.live() if self.live is not None else self.settings).aidb

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        """Checks `/ready` runs besides PostgreSQL."""

        async def embedder_answers() -> None:
            await check_dimension(self.embedder, self.settings.embedder.dimension)

        return {"vectors": self.vectors.ping, "embedder": embedder_answers}


def cache_counter(registry: CollectorRegistry) -> Counter:
    """The search ranking cache's hit/miss counter, registered on the server's registry (once per server)."""
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
    targets = Targets.of(deps.aidb)
    for name, target in deps.aidb.register_servers.items():
        delay = 1.0
        while True:
            try:
                await register_server(
                    deps.database,
                    deps.vectors,
                    deps.embedder,
                    name,
                    url=target if is_url(target) else None,
                    targets=targets,
                )
                logger.info("peer server registered", extra={"server_name": name})
                break
            except (DependencyUnavailable, RateLimited):
                await anyio.sleep(delay)
                delay = min(delay * 2, _PEER_RETRY_MAX_SECONDS)
            except Exception:  # a bad peer entry must not take the knowledge base down
                logger.exception("peer server registration failed", extra={"server_name": name})
                break


async def _index_own_tools(deps: AidbDeps, own_tools: OwnTools) -> None:
    """Index AIDB's own tools for find_tools before serving (a no-op when they are stored already)."""
    try:
        await index_own_tools(deps.database, deps.vectors, deps.embedder, await own_tools())
    except Exception:  # find_tools without AIDB's own tools must not keep the knowledge base from starting
        logger.exception("indexing AIDB's own tools failed")


async def _catch_up(database: Database, vectors: VectorIndex, lacking: Lacking) -> None:
    """Rebuild what the index lacks, in the background: tools are served meanwhile (searches see fewer hits)."""
    await reindex_missing(database, vectors, lacking)


@contextlib.asynccontextmanager
async def open_aidb(
    core: Core, database: Database, *, cache_requests: Counter, own_tools: OwnTools | None = None
) -> AsyncIterator[AidbDeps]:
    """Open the vector index and the embedder, check dimensions, start the indexer; close all on exit.

    `cache_requests` (from `cache_counter`) counts ranking-cache lookups; `own_tools` lists the server's tools,
    indexed at start so that find_tools finds AIDB's own tools too.
    """
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
            cache: GenerationCache[Ranking] = GenerationCache(
                settings.aidb.cache_ttl_seconds,
                settings.aidb.cache_max_entries,
                on_result=lambda hit: cache_requests.labels("hit" if hit else "miss").inc(),
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
            runtime = core.runtime
            async with (
                background_tasks("aidb") as background,
                # Inside the indexer's group: running tasks are cancelled before the indexer stops.
                MemoryTaskStore.open(ttl_seconds=settings.aidb.mcp_task_ttl_seconds) as tasks,
            ):
                deps = AidbDeps(
                    settings, database, vectors, embedder, indexer, searcher, tasks, live=lambda: runtime.effective
                )
                if own_tools is not None:
                    await _index_own_tools(deps, own_tools)
                # Whether the index lacks stored chunks (a restore without vectors, a lost vector directory) is
                # decided before serving: once writes arrive, a chunk committed but not yet indexed looks missing.
                await indexer.drain()
                lacking = await index_lacks(database, vectors)
                background.start("indexer", indexer.run)
                background.start("catch-up", functools.partial(_catch_up, database, vectors, lacking))
                if settings.aidb.register_servers:
                    background.start("register-peers", functools.partial(_register_peers, deps))
                yield deps
        finally:
            await vectors.close()
    finally:
        await embedder.close()
