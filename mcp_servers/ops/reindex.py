"""`mcp-stack reindex`: rebuild AIDB's vector index from PostgreSQL, whether AIDB is running or not.

Stopped (or on a Qdrant server): the command opens the index itself and rebuilds it, printing progress. Running
on the embedded Qdrant Edge (whose shards belong to one process): every document is queued in AIDB's outbox, and
the running server's indexer applies them within its poll interval; `stats.pending_index` counts them down.
"""

import time
from collections.abc import Callable
from typing import Final

from mcp_servers.aidb import indexer, store
from mcp_servers.aidb.deps import vector_settings
from mcp_servers.aidb.points import CHUNKS_COLLECTION, TOOLS_COLLECTION
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.vectors.factory import create_vector_index

__all__ = ["reindex"]

PROGRESS_EVERY_SECONDS: Final = 2.0


async def reindex(settings: StackSettings, *, project: str | None, say: Callable[[str], None]) -> str:
    """Rebuild (or queue the rebuild of) AIDB's index; `say` prints progress lines; returns the summary line."""
    breakers = BreakerRegistry(settings.breaker)
    own = vector_settings(settings)
    async with open_database(settings, breakers, application_name="mcp-stack reindex") as database:
        if own.vectors.backend == "edge":
            from mcp_servers.shared.vectors.edge import held_by_running_server  # only this backend needs Edge

            if await held_by_running_server(own.vector_path / "edge"):
                queued = await store.queue_reindex(database, project=project)
                return (
                    f"AIDB is running: queued {queued} documents for its indexer, which applies them now "
                    "(its stats tool shows pending_index falling to 0)"
                )
        vectors = create_vector_index(own, breakers)
        last = 0.0

        async def progress(done: int, total: int) -> None:
            nonlocal last
            if done == total or time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                say(f"reindex: {done} of {total} chunks")

        try:
            dimension = settings.embedder.dimension
            await vectors.ensure_collection(CHUNKS_COLLECTION, dimension)
            await vectors.ensure_collection(TOOLS_COLLECTION, dimension)
            documents, chunks, tools, _ = await indexer.rebuild(
                database, vectors, dimension, project=project, progress=progress
            )
        finally:
            await vectors.close()
    scope = f"project {project}" if project else "every project"
    return f"reindexed {scope}: {documents} documents, {chunks} chunks, {tools} tools"
