"""Qdrant Edge adapter: the embedded default, one in-process `EdgeShard` per collection under a root directory.

Layout: `<root>/.lock` (held while the index is open: a shard belongs to one process), and per collection
`<root>/<collection>/collection.json` (our metadata: dimension) beside `<root>/<collection>/shard/` (engine files).
A collection directory appears by atomic rename only when complete, so a crash never leaves a half-made one.
"""

import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import filelock
import numpy
import qdrant_edge as qe

from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable, InvalidRequest, NotFound
from mcp_servers.shared.resilience.breaker import CircuitBreaker
from mcp_servers.shared.vectors import _edge_store as store
from mcp_servers.shared.vectors._common import (
    DENSE,
    RRF_K,
    SEARCH_HNSW_EF,
    SPARSE,
    UPSERT_BATCH,
    EngineFailure,
    Term,
    canonical_id,
    check_collection,
    check_dense,
    check_search,
    check_sparse,
    filter_terms,
    guarded,
    prefetch_limit,
)
from mcp_servers.shared.vectors.port import FilterValue, ScoredPoint, SearchMode, SparseVector, VectorPoint

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EdgeTuning:
    """Engine knobs; the defaults keep search p50 well under 15 ms at 100k 384-d chunks on 2 cores (see bench/).

    Args:
        hnsw_ef: candidate list size at search time; higher = better recall, slower.
        full_scan_threshold_kb: segments whose vectors are smaller than this are searched by brute force.
        indexing_threshold_kb: segments larger than this get an HNSW graph when `optimize` runs.
        default_segment_number: target segment count after optimisation (one per core searches in parallel).
        optimize_after_points: run `optimize` after an upsert once this many points arrived since the last run;
            0 leaves optimisation to explicit `optimize()` calls.
    """

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int = SEARCH_HNSW_EF
    full_scan_threshold_kb: int = 10_000
    indexing_threshold_kb: int = 10_000
    default_segment_number: int = 2
    optimize_after_points: int = 20_000
    search_threads: int = 2


@dataclass(slots=True)
class _Collection:
    name: str
    shard: qe.EdgeShard
    dimension: int
    write_lock: anyio.Lock = field(default_factory=anyio.Lock)
    points_since_optimize: int = 0
    # Payload fields with an engine index (persisted by the engine; read back when the shard opens).
    indexed_fields: set[str] = field(default_factory=set)


async def held_by_running_server(root: Path) -> bool:
    """True when the Edge store at `root` is open in a running process (its shards cannot be opened here)."""
    return await anyio.to_thread.run_sync(store.held_elsewhere, root)


class EdgeVectorIndex:
    """`VectorIndex` over Qdrant Edge shards in `root`; this index owns the shards and closes them in `close()`.

    Blocking engine calls run in worker threads (at most `CapacityLimiter(2)` at once). Writes to one collection
    are serialised; searches run concurrently with them. Only one process may open `root` at a time. A payload
    field gets an engine index (keyword, integer or bool, by the filter value) the first time a filter uses it.
    """

    def __init__(
        self,
        root: Path,
        *,
        breaker: CircuitBreaker | None = None,
        tuning: EdgeTuning | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._root = root
        self._breaker = breaker
        self._tuning = tuning or EdgeTuning()
        self._limiter = limiter or anyio.CapacityLimiter(2)
        self._collections: dict[str, _Collection] = {}
        # Guards opening, creating, dropping and restoring collections (not reads or point writes).
        self._registry_lock = anyio.Lock()
        self._root_lock: filelock.BaseFileLock | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """Adapter name for /ready and metrics."""
        return "qdrant-edge"

    async def ensure_collection(self, collection: str, dimension: int) -> None:
        """Create the collection if absent; raise ConfigurationError if it exists with another dimension."""
        check_collection(collection)
        if dimension < 1:
            raise InvalidRequest("dimension must be at least 1")
        async with self._registry_lock:
            existing = await self._open_locked(collection)
            if existing is None:
                await self._create_locked(collection, dimension)
            elif existing.dimension != dimension:
                raise ConfigurationError(
                    f"vector collection {collection!r} holds {existing.dimension}-dimensional vectors but "
                    f"{dimension} were configured; reindex into a new collection or drop this one"
                )

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by id; raise NotFound if the collection does not exist."""
        if not points:
            return
        coll = await self._require(collection)
        rows = [
            (canonical_id(p.id), check_dense(p.dense, coll.dimension), check_sparse(p.sparse), dict(p.payload))
            for p in points
        ]
        async with coll.write_lock:
            self._check_current(coll)
            for start in range(0, len(rows), UPSERT_BATCH):
                await self._run(partial(_upsert_rows, coll.shard, rows[start : start + UPSERT_BATCH]), "upsert")
            coll.points_since_optimize += len(rows)
            threshold = self._tuning.optimize_after_points
            if threshold and coll.points_since_optimize >= threshold:
                await self._optimize_locked(coll)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids and an absent collection are ignored."""
        point_ids: list[qe.PointId] = [canonical_id(point_id) for point_id in ids]
        coll = await self._get(collection)
        if coll is None or not point_ids:
            return
        async with coll.write_lock:
            self._check_current(coll)
            await self._run(partial(coll.shard.update, qe.UpdateOperation.delete_points(point_ids)), "delete")

    async def delete_where(self, collection: str, filters: Mapping[str, FilterValue]) -> None:
        """Delete every point whose payload matches the filters (at least one filter is required)."""
        terms = filter_terms(filters)
        if terms == []:
            raise InvalidRequest("delete_where needs at least one filter; use drop to empty a whole collection")
        coll = await self._get(collection)
        if coll is None or terms is None:
            return
        operation = qe.UpdateOperation.delete_points_by_filter(_edge_filter(terms))
        async with coll.write_lock:
            self._check_current(coll)
            await self._index_fields_locked(coll, terms)
            await self._run(partial(coll.shard.update, operation), "delete_where")

    async def search(
        self,
        collection: str,
        *,
        dense: Sequence[float] | None,
        sparse: SparseVector | None,
        mode: SearchMode,
        limit: int,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> list[ScoredPoint]:
        """Best `limit` points, highest score first; an absent collection has no hits."""
        check_search(mode, dense, sparse, limit)
        terms = filter_terms(filters)
        coll = await self._get(collection)
        if coll is None or terms is None:
            return []
        if any(term.key not in coll.indexed_fields for term in terms):
            async with coll.write_lock:
                self._check_current(coll)
                await self._index_fields_locked(coll, terms)
        request = self._query(coll, mode, dense, sparse, limit, _edge_filter(terms) if terms else None)
        hits = await self._run(partial(coll.shard.query, request), "search")
        return [ScoredPoint(id=str(hit.id), score=hit.score, payload=hit.payload or {}) for hit in hits]

    async def count(self, collection: str) -> int:
        """Number of points in the collection (0 if it does not exist)."""
        coll = await self._get(collection)
        if coll is None:
            return 0
        return await self._run(partial(coll.shard.count, qe.CountRequest(exact=True)), "count")

    async def drop(self, collection: str) -> None:
        """Remove the collection and its files; absent is fine."""
        check_collection(collection)
        async with self._registry_lock:
            await self._ensure_root()
            coll = self._collections.pop(collection, None)
            if coll is not None:
                async with coll.write_lock:
                    await self._run(coll.shard.close, "drop")
            await self._run(partial(store.remove_dir, self._root, self._root / collection), "drop")

    async def ping(self) -> None:
        """Raise DependencyUnavailable if the store is closed or its directory cannot be locked."""
        await self._ensure_root()

    async def close(self) -> None:
        """Flush and close every shard and release the directory lock; idempotent."""
        async with self._registry_lock:
            if self._closed:
                return
            self._closed = True
            collections, self._collections = list(self._collections.values()), {}
            try:
                for coll in collections:
                    async with coll.write_lock:
                        await self._run(partial(_flush_and_close, coll.shard), "close")
            finally:
                if self._root_lock is not None:
                    await anyio.to_thread.run_sync(self._root_lock.release, limiter=self._limiter)
                    self._root_lock = None

    async def optimize(self, collection: str) -> bool:
        """Merge segments and build HNSW graphs now (slow for big collections); True if anything changed."""
        coll = await self._require(collection)
        async with coll.write_lock:
            self._check_current(coll)
            return await self._optimize_locked(coll)

    async def snapshot(self, collection: str, dest_dir: Path) -> Path:
        """Write a consistent archive of the collection (`<collection>-<UTC time>.tar.gz`) into `dest_dir`.

        Writes to the collection wait while the archive is written; searches go on. Qdrant Edge 0.9 has no
        snapshot-creation call (only unpacking server snapshots), so this archives the flushed shard directory
        with our metadata; `restore_snapshot` reads it back.
        """
        coll = await self._require(collection)
        async with coll.write_lock:
            self._check_current(coll)
            await self._run(coll.shard.flush, "snapshot")
            return await self._run(
                partial(store.write_archive, self._root / collection, dest_dir, collection), "snapshot"
            )

    async def restore_snapshot(self, collection: str, archive: Path) -> None:
        """Replace (or create) `collection` with the contents of an archive made by `snapshot`."""
        check_collection(collection)
        async with self._registry_lock:
            await self._ensure_root()
            staging = store.scratch(self._root, "restore")
            try:
                await self._unpack(archive, staging, collection)
                old = self._collections.pop(collection, None)
                if old is not None:
                    async with old.write_lock:
                        await self._run(old.shard.close, "restore")
                await self._run(partial(store.swap_in, self._root, staging, self._root / collection), "restore")
            finally:
                await anyio.to_thread.run_sync(
                    partial(shutil.rmtree, staging, ignore_errors=True), limiter=self._limiter
                )
            await self._open_locked(collection)

    async def _unpack(self, archive: Path, staging: Path, collection: str) -> int:
        """Extract and check an archive into `staging`; return its dimension."""
        try:
            meta_text = await anyio.to_thread.run_sync(
                partial(store.extract_archive, archive, staging), limiter=self._limiter
            )
        except FileNotFoundError:
            raise NotFound("snapshot archive not found") from None
        except (tarfile.TarError, ValueError):
            raise InvalidRequest("the file is not a vector snapshot made by snapshot()") from None
        except OSError as exc:
            raise DependencyUnavailable(self.name, reason="cannot unpack the snapshot") from exc
        return store.parse_meta(meta_text, collection)

    def _shard_path(self, collection: str) -> str:
        return str(self._root / collection / store.SHARD_DIR)

    def _config(self, dimension: int) -> qe.EdgeConfig:
        tuning = self._tuning
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(
                m=tuning.hnsw_m,
                ef_construct=tuning.hnsw_ef_construct,
                full_scan_threshold=tuning.full_scan_threshold_kb,
            ),
            optimizers=qe.EdgeOptimizersConfig(
                default_segment_number=tuning.default_segment_number,
                indexing_threshold=tuning.indexing_threshold_kb,
            ),
            max_search_threads=tuning.search_threads,
        )

    def _query(
        self,
        coll: _Collection,
        mode: SearchMode,
        dense: Sequence[float] | None,
        sparse: SparseVector | None,
        limit: int,
        payload_filter: qe.Filter | None,
    ) -> qe.QueryRequest:
        # check_search has made sure the vectors this mode needs are present.
        params = qe.SearchParams(hnsw_ef=max(self._tuning.hnsw_ef, limit))
        if mode == "dense":
            query = _dense_query(dense, coll.dimension)
            return qe.QueryRequest(limit=limit, query=query, filter=payload_filter, params=params, with_payload=True)
        if mode == "lexical":
            return qe.QueryRequest(limit=limit, query=_sparse_query(sparse), filter=payload_filter, with_payload=True)
        candidates = prefetch_limit(limit)
        prefetches = [
            qe.Prefetch(
                limit=candidates, query=_dense_query(dense, coll.dimension), filter=payload_filter, params=params
            ),
            qe.Prefetch(limit=candidates, query=_sparse_query(sparse), filter=payload_filter),
        ]
        fusion: Any = qe.Fusion.Rrf(k=RRF_K)  # the stub's ScoringQueryType omits the nested Fusion.Rrf class
        return qe.QueryRequest(
            limit=limit, prefetches=prefetches, query=fusion, filter=payload_filter, with_payload=True
        )

    async def _index_fields_locked(self, coll: _Collection, terms: Sequence[Term]) -> None:
        """Give every filtered payload field an index on first use, so filters stay fast at 100k points."""
        for term in terms:
            if term.key in coll.indexed_fields:
                continue
            operation = qe.UpdateOperation.create_field_index(term.key, _schema_type(term))
            await self._run(partial(coll.shard.update, operation), "index")
            coll.indexed_fields.add(term.key)

    async def _optimize_locked(self, coll: _Collection) -> bool:
        changed = await self._run(partial(_optimize_and_flush, coll.shard), "optimize")
        coll.points_since_optimize = 0
        return changed

    async def _run(self, func: Callable[[], T], operation: str) -> T:
        """Run one blocking engine call in a worker thread, through the breaker; engine errors -> unavailable."""
        async with guarded(self._breaker, dependency=self.name, operation=operation):
            try:
                return await anyio.to_thread.run_sync(func, limiter=self._limiter)
            except Exception as exc:  # the binding raises bare Exception for every engine error
                raise EngineFailure(operation) from exc

    async def _ensure_root(self) -> None:
        if self._closed:
            raise DependencyUnavailable(self.name, reason="the vector index is closed")
        if self._root_lock is not None:
            return
        try:
            self._root_lock = await anyio.to_thread.run_sync(store.lock_root, self._root, limiter=self._limiter)
        except filelock.Timeout:
            raise ConfigurationError(
                "the Qdrant Edge vector store is open in another process; Edge is single-process, so stop the "
                "other process or set MCP_STACK_VECTORS__BACKEND=qdrant"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create or lock the vector store directory ({exc.strerror}); check MCP_STACK_VECTORS__PATH"
            ) from None

    async def _get(self, collection: str) -> _Collection | None:
        """The open collection, opening it from disk on first use; None if it does not exist."""
        check_collection(collection)
        if self._closed:
            raise DependencyUnavailable(self.name, reason="the vector index is closed")
        coll = self._collections.get(collection)
        if coll is not None:
            return coll
        async with self._registry_lock:
            return await self._open_locked(collection)

    async def _require(self, collection: str) -> _Collection:
        coll = await self._get(collection)
        if coll is None:
            raise NotFound(f"vector collection {collection!r} does not exist; call ensure_collection first")
        return coll

    def _check_current(self, coll: _Collection) -> None:
        # A write that waited for the lock while the collection was dropped or restored must not touch the old shard.
        if self._collections.get(coll.name) is not coll:
            raise NotFound(f"vector collection {coll.name!r} was dropped or replaced meanwhile; retry")

    async def _open_locked(self, collection: str) -> _Collection | None:
        await self._ensure_root()
        coll = self._collections.get(collection)
        if coll is not None:
            return coll
        meta_text = await self._run(partial(store.read_meta, self._root / collection), "open")
        if meta_text is None:
            return None
        dimension = store.parse_meta(meta_text, collection)
        shard = await self._run(
            partial(qe.EdgeShard.load, self._shard_path(collection), self._config(dimension)), "open"
        )
        coll = _Collection(name=collection, shard=shard, dimension=dimension)
        coll.indexed_fields = await self._run(partial(_indexed_fields, shard), "open")
        self._collections[collection] = coll
        return coll

    async def _create_locked(self, collection: str, dimension: int) -> None:
        meta = store.meta_json(dimension, DENSE, SPARSE)
        await self._run(
            partial(_create_collection_dir, self._root, collection, meta, self._config(dimension)), "create"
        )
        shard = await self._run(
            partial(qe.EdgeShard.load, self._shard_path(collection), self._config(dimension)), "create"
        )
        self._collections[collection] = _Collection(name=collection, shard=shard, dimension=dimension)


def _dense_query(dense: Sequence[float] | None, dimension: int) -> qe.Query:
    return qe.Query.Nearest(check_dense(dense or (), dimension), using=DENSE)


def _sparse_query(sparse: SparseVector | None) -> qe.Query:
    checked = check_sparse(sparse or SparseVector(indices=(), values=()))
    return qe.Query.Nearest(qe.SparseVector(list(checked.indices), list(checked.values)), using=SPARSE)


def _schema_type(term: Term) -> qe.PayloadSchemaType:
    # bool before int: bool is a subclass of int.
    if isinstance(term.value, bool):
        return qe.PayloadSchemaType.Bool
    if isinstance(term.value, int):
        return qe.PayloadSchemaType.Integer
    return qe.PayloadSchemaType.Keyword


def _indexed_fields(shard: qe.EdgeShard) -> set[str]:
    return set(shard.info().payload_schema)


def _edge_filter(terms: Sequence[Term]) -> qe.Filter:
    conditions: list[qe.ConditionType] = []
    for term in terms:
        if term.values is not None:
            conditions.append(qe.FieldCondition(term.key, match=qe.MatchAny(list(term.values))))
        elif isinstance(term.value, bool):
            # qdrant-edge-py 0.9.0 converts a Python bool to an integer (bool subclasses int), so MatchValue(True)
            # would match 1 and never true; numpy.bool_ is no int and reaches the engine as a boolean.
            conditions.append(qe.FieldCondition(term.key, match=qe.MatchValue(numpy.bool_(term.value))))  # type: ignore[arg-type]
        elif term.value is not None:
            conditions.append(qe.FieldCondition(term.key, match=qe.MatchValue(term.value)))
    return qe.Filter(must=conditions)


def _upsert_rows(shard: qe.EdgeShard, rows: Sequence[tuple[str, list[float], SparseVector, dict[str, Any]]]) -> None:
    points = [
        qe.Point(
            point_id,
            {DENSE: dense, SPARSE: qe.SparseVector(list(sparse.indices), list(sparse.values))},
            payload,
        )
        for point_id, dense, sparse, payload in rows
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))


def _optimize_and_flush(shard: qe.EdgeShard) -> bool:
    changed = shard.optimize()
    if changed:
        # Edge 0.9 keeps the segments an optimisation replaced (files on disk, mapped into this process) until
        # the next flush: without it every optimisation round stays resident (1.3 GB of dead segments at 100k).
        shard.flush()
    return changed


def _flush_and_close(shard: qe.EdgeShard) -> None:
    # Flushed segments open without replaying the WAL, so the next start is fast.
    shard.flush()
    shard.close()


def _create_collection_dir(root: Path, collection: str, meta: str, config: qe.EdgeConfig) -> None:
    staging = store.scratch(root, "staging")
    staging.mkdir()
    try:
        (staging / store.META_FILE).write_text(meta, encoding="utf-8")
        qe.EdgeShard.create(str(staging / store.SHARD_DIR), config).close()
        staging.rename(root / collection)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
