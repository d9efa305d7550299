"""The outbox indexer: applies committed document changes to the vector index, idempotently.

PostgreSQL is the source of truth. Each outbox row says "document D changed"; applying it upserts D's current
chunks (deterministic point ids, so repeats overwrite), deletes the points its previous version had, then
deletes any point it wrote that a newer version replaced meanwhile (documents are not locked during the upsert).
A row is deleted in the same transaction that applied it, so a crash at any point leaves it to be applied again.
`rebuild` recreates the index from the tables alone (the `reindex` tool).
"""

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from mcp_servers.aidb import store
from mcp_servers.aidb.points import CHUNKS_COLLECTION, TOOLS_COLLECTION, chunk_point, project_filter, tool_point
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.observability.progress import ProgressLog
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

_REBUILD_PAGE = 1000


class Indexer:
    """Drains the outbox into the vector index; `run` is the background loop owned by the server's lifespan."""

    def __init__(self, database: Database, vectors: VectorIndex, *, batch: int, poll_seconds: float) -> None:
        self._database = database
        self._vectors = vectors
        self._batch = batch
        self._poll_seconds = poll_seconds
        self._wake = anyio.Event()
        self.applied = 0

    def notify(self) -> None:
        """Wake the background loop (a write committed)."""
        self._wake.set()

    async def apply_documents(self, document_ids: Sequence[str]) -> bool:
        """Apply the pending changes of these documents now; False if the vector index is unavailable.

        Waits for another indexer that holds them, so on True the changes are in the index.
        """
        ids = [uuid.UUID(d) for d in document_ids]
        try:
            # A short batch took every pending row of these documents; later rows belong to later writes.
            while await self._apply_batch(ids) == self._batch:
                pass
        except DependencyUnavailable:
            logger.warning("vector index unavailable; the outbox will catch up", extra={"documents": len(ids)})
            self.notify()
            return False
        return True

    async def drain(self) -> int:
        """Apply every pending change; returns how many outbox rows were applied."""
        total = 0
        while applied := await self._apply_batch(None):
            total += applied
        return total

    async def _apply_batch(self, document_ids: Sequence[uuid.UUID] | None) -> int:
        async with self._database.transaction() as conn:
            entries, chunks = await store.claim_outbox(conn, self._batch, document_ids)
            if not entries:
                return 0
            # This transaction only forgets outbox rows: if a crash loses its commit, the rows are applied again
            # (idempotently), so it need not wait for the WAL flush (~1-3 ms per write here; docs/decisions.md).
            await conn.execute("SET LOCAL synchronous_commit = off")
            current = {chunk.point_id for chunk in chunks}
            stale = sorted({p for entry in entries for p in entry.stale_point_ids} - current)
            # Index first, then forget the rows: if the engine fails, the transaction rolls back and they stay.
            if chunks:
                await self._vectors.upsert(CHUNKS_COLLECTION, [chunk_point(chunk) for chunk in chunks])
            if stale:
                await self._vectors.delete(CHUNKS_COLLECTION, stale)
            if chunks:
                # A newer version committed while we upserted would have its stale list applied before or after
                # us; if before, the points we just wrote are orphans: remove what is no longer in PostgreSQL.
                orphans = sorted(current - await store.current_point_ids(conn, sorted(current)))
                if orphans:
                    await self._vectors.delete(CHUNKS_COLLECTION, orphans)
            await store.finish_outbox(conn, [entry.id for entry in entries])
            # Search sees the index as soon as it changed (above), not at this commit; bumping before the commit
            # also means a writer waiting for these rows (apply_documents) returns only once cached searches
            # are invalid, never just before a late bump invalidates the caller's next search.
            await store.bump_generation(self._database)
        self.applied += len(entries)
        return len(entries)

    async def run(self) -> None:
        """Drain now, then whenever notified or every `poll_seconds`; back off while the index is down."""
        delay = self._poll_seconds
        while True:
            try:
                await self.drain()
                delay = self._poll_seconds
            except DependencyUnavailable as exc:
                delay = min(max(delay * 2, getattr(exc, "retry_after_seconds", 1.0)), 60.0)
                logger.warning("indexer paused: a dependency is unavailable", extra={"retry_seconds": delay})
            except Exception:  # the loop must outlive any single bad batch
                logger.exception("indexer batch failed")
                delay = min(delay * 2, 60.0)
            with anyio.move_on_after(delay):
                await self._wake.wait()
            self._wake = anyio.Event()


RebuildProgress = Callable[[int, int], Awaitable[None]]
"""Called with (chunks written, chunks to write) after each page of a rebuild."""


async def rebuild(
    database: Database,
    vectors: VectorIndex,
    dimension: int,
    *,
    project: str | None,
    progress: RebuildProgress | None = None,
) -> tuple[int, int, int, int]:
    """Recreate the index from PostgreSQL: (documents, chunks, tools, outbox rows cleared).

    Without a project, both collections are dropped and refilled, and the outbox rows committed before the
    rebuild started are cleared (the rebuild reflects them). With a project, that project's points are
    replaced and the outbox is left to the indexer.
    """
    pending = await store.outbox_ids(database) if project is None else []
    if project is None:
        await vectors.drop(CHUNKS_COLLECTION)
        await vectors.drop(TOOLS_COLLECTION)
    else:
        await vectors.delete_where(CHUNKS_COLLECTION, project_filter(project))
    await vectors.ensure_collection(CHUNKS_COLLECTION, dimension)
    await vectors.ensure_collection(TOOLS_COLLECTION, dimension)
    documents, chunks = await upsert_chunks(database, vectors, project=project, progress=progress)
    tools = 0
    if project is None:
        tools = await upsert_tools(database, vectors)
    cleared = await store.clear_outbox(database, pending) if pending else 0
    await store.bump_generation(database)
    return documents, chunks, tools, cleared


async def upsert_chunks(
    database: Database, vectors: VectorIndex, *, project: str | None, progress: RebuildProgress | None = None
) -> tuple[int, int]:
    """Write every stored chunk (of one project, or all) into the index, a page at a time: (documents, chunks).

    Idempotent (deterministic point ids); a point written for a chunk that a concurrent change removed meanwhile
    is deleted again, so the index never keeps what PostgreSQL no longer has.
    """
    total = await store.chunk_count(database, project=project)
    chunks = 0
    documents: set[str] = set()
    after: str | None = None
    if progress is not None:
        await progress(0, total)
    while page := await store.all_chunks(database, project=project, after=after, limit=_REBUILD_PAGE):
        points = [chunk.point_id for chunk in page]
        await vectors.upsert(CHUNKS_COLLECTION, [chunk_point(chunk) for chunk in page])
        async with database.transaction() as conn:
            orphans = sorted(set(points) - await store.current_point_ids(conn, points))
        if orphans:
            await vectors.delete(CHUNKS_COLLECTION, orphans)
        chunks += len(page)
        documents.update(chunk.document_id for chunk in page)
        after = page[-1].point_id
        if progress is not None:
            await progress(chunks, max(total, chunks))
    return len(documents), chunks


async def upsert_tools(database: Database, vectors: VectorIndex) -> int:
    """Write every registered tool into the index; returns how many."""
    all_tools = await store.all_tools(database)
    if all_tools:
        await vectors.upsert(TOOLS_COLLECTION, [tool_point(tool) for tool in all_tools])
    return len(all_tools)


@dataclass(frozen=True, slots=True)
class Lacking:
    """What the vector index lacks of what PostgreSQL holds: stored chunks (when fewer are indexed) and tools."""

    chunks_stored: int = 0
    chunks_indexed: int = 0
    tools: bool = False

    @property
    def chunks(self) -> bool:
        return self.chunks_indexed < self.chunks_stored


async def index_lacks(database: Database, vectors: VectorIndex) -> Lacking:
    """Compare the index with PostgreSQL. Call it with the outbox drained and before any write is served: a chunk
    committed but not yet indexed would look missing."""
    counts = await store.counts(database)
    indexed = await vectors.count(CHUNKS_COLLECTION)
    indexed_tools = await vectors.count(TOOLS_COLLECTION)
    return Lacking(chunks_stored=counts.chunks, chunks_indexed=indexed, tools=indexed_tools < counts.tools)


async def reindex_missing(
    database: Database, vectors: VectorIndex, lacking: Lacking, *, progress_every_seconds: float = 2.0
) -> int:
    """Start-up repair: when `lacking` (from `index_lacks`) says the index holds fewer chunks than PostgreSQL (a
    restore without vectors, a lost or replaced vector directory), write them all again, logging progress; returns
    the chunks written (0 if none)."""
    written = 0
    if lacking.chunks:
        logger.warning(
            "the vector index lacks chunks that PostgreSQL holds; reindexing them",
            extra={"chunks_stored": lacking.chunks_stored, "chunks_indexed": lacking.chunks_indexed},
        )
        progress = ProgressLog(logger, "reindexing chunks", unit="chunks", every_seconds=progress_every_seconds)

        async def report(done: int, total: int) -> None:
            progress.update(done, total)

        _, written = await upsert_chunks(database, vectors, project=None, progress=report)
        await store.bump_generation(database)
        logger.info("reindex finished", extra={"chunks": written})
    if lacking.tools:
        await upsert_tools(database, vectors)
    return written
