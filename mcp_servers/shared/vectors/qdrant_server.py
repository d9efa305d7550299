"""Qdrant server adapter over `AsyncQdrantClient`: the production and multi-replica path.

`url=` talks to a Qdrant server over HTTP with `AsyncQdrantClient`. `path=` / `location=":memory:"` run
qdrant-client's local mode (brute force, one process; for tests and development). Local mode is a blocking engine
even behind the async client (its `async def`s do SQLite and file I/O inline), so it runs as the sync
`QdrantClient` in one worker thread instead, and the event loop never stalls whichever mode is configured.
"""

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable, InvalidRequest, NotFound
from mcp_servers.shared.files import make_state_dir
from mcp_servers.shared.resilience.breaker import CircuitBreaker
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

logger = logging.getLogger(__name__)

# Transport-level trouble: the server is down, slow or unreachable. Counted by the breaker.
_TRANSPORT_ERRORS = (ResponseHandlingException, QdrantException, httpx.HTTPError, OSError, TimeoutError)


class QdrantServerIndex:
    """`VectorIndex` over a Qdrant server (or qdrant-client local mode); it owns its client and closes it.

    Give exactly one of `url` (a server, e.g. "http://qdrant:6333"; taken literally, port included), `path`
    (local mode on disk) or `location=":memory:"`. The client is created on first use. On a server, a payload
    field gets an index (keyword, integer or bool, by the filter value) the first time a filter uses it.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        location: str | None = None,
        timeout_seconds: float = 10.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if sum(option is not None for option in (url, path, location)) != 1:
            raise ConfigurationError("the Qdrant vector index needs exactly one of a URL, a local path or a location")
        self._connect: Callable[[], AsyncQdrantClient | QdrantClient]
        if url is not None:
            # check_compatibility would make a blocking HTTP call and warn when the server is down; ping() is the
            # readiness check.
            self._connect = partial(
                AsyncQdrantClient,
                url=url,
                port=None,
                api_key=api_key,
                timeout=math.ceil(timeout_seconds),
                check_compatibility=False,
            )
        else:
            self._connect = partial(_local_client, path, location)
        self._client: AsyncQdrantClient | QdrantClient | None = None
        self._connect_lock = anyio.Lock()
        # Local mode is not thread-safe: one worker thread at a time.
        self._local_limiter = anyio.CapacityLimiter(1)
        self._remote = url is not None
        self._breaker = breaker
        # Dimension of each collection known to exist; filled lazily, emptied by drop.
        self._dimensions: dict[str, int] = {}
        # Payload fields with a server-side index, per collection (read from the collection info, then grown).
        self._indexed: dict[str, set[str]] = {}
        self._closed = False

    @property
    def name(self) -> str:
        """Adapter name for /ready and metrics."""
        return "qdrant"

    async def ensure_collection(self, collection: str, dimension: int) -> None:
        """Create the collection if absent; raise ConfigurationError if it exists with another dimension."""
        check_collection(collection)
        if dimension < 1:
            raise InvalidRequest("dimension must be at least 1")
        existing = await self._dimension(collection)
        if existing is None:
            try:
                await self._invoke(
                    "create",
                    "create_collection",
                    collection,
                    vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            except InvalidRequest:
                # Another replica created it between our check and our create (409); compare with theirs.
                self._dimensions.pop(collection, None)
                existing = await self._dimension(collection)
                if existing is None:
                    raise
            else:
                self._dimensions[collection] = dimension
                return
        if existing != dimension:
            raise ConfigurationError(
                f"vector collection {collection!r} holds {existing}-dimensional vectors but {dimension} were "
                "configured; reindex into a new collection or drop this one"
            )

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by id; raise NotFound if the collection does not exist."""
        if not points:
            return
        dimension = await self._require(collection)
        structs = [
            models.PointStruct(
                id=canonical_id(point.id),
                vector={DENSE: check_dense(point.dense, dimension), SPARSE: _sparse(point.sparse)},
                payload=dict(point.payload),
            )
            for point in points
        ]
        for start in range(0, len(structs), UPSERT_BATCH):
            batch = structs[start : start + UPSERT_BATCH]
            await self._invoke("upsert", "upsert", collection, points=batch, wait=True)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids and an absent collection are ignored."""
        point_ids: list[models.ExtendedPointId] = [canonical_id(point_id) for point_id in ids]
        if not point_ids or await self._dimension(collection) is None:
            return
        selector = models.PointIdsList(points=point_ids)
        await self._absent_ok(collection, "delete", "delete", collection, points_selector=selector, wait=True)

    async def delete_where(self, collection: str, filters: Mapping[str, FilterValue]) -> None:
        """Delete every point whose payload matches the filters (at least one filter is required)."""
        terms = filter_terms(filters)
        if terms == []:
            raise InvalidRequest("delete_where needs at least one filter; use drop to empty a whole collection")
        if terms is None or await self._dimension(collection) is None:
            return
        await self._index_fields(collection, terms)
        selector = models.FilterSelector(filter=_qdrant_filter(terms))
        await self._absent_ok(collection, "delete_where", "delete", collection, points_selector=selector, wait=True)

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
        dimension = await self._dimension(collection)
        if dimension is None or terms is None:
            return []
        await self._index_fields(collection, terms)
        payload_filter = _qdrant_filter(terms) if terms else None
        # Local mode is brute force and warns about search params, so only a server gets them.
        params = models.SearchParams(hnsw_ef=max(SEARCH_HNSW_EF, limit)) if self._remote else None
        # check_search has made sure the vectors this mode needs are present.
        query: dict[str, Any]
        if mode == "dense":
            query = {"query": check_dense(dense or (), dimension), "using": DENSE, "search_params": params}
        elif mode == "lexical":
            query = {"query": _sparse(sparse), "using": SPARSE}
        else:
            candidates = prefetch_limit(limit)
            dense_query = check_dense(dense or (), dimension)
            prefetch = [
                models.Prefetch(query=dense_query, using=DENSE, filter=payload_filter, params=params, limit=candidates),
                models.Prefetch(query=_sparse(sparse), using=SPARSE, filter=payload_filter, limit=candidates),
            ]
            query = {"prefetch": prefetch, "query": models.RrfQuery(rrf=models.Rrf(k=RRF_K))}
        try:
            response = await self._invoke(
                "search",
                "query_points",
                collection,
                query_filter=payload_filter,
                limit=limit,
                with_payload=True,
                **query,
            )
        except NotFound:
            self._dimensions.pop(collection, None)
            return []
        return [ScoredPoint(id=str(hit.id), score=hit.score, payload=hit.payload or {}) for hit in response.points]

    async def count(self, collection: str) -> int:
        """Number of points in the collection (0 if it does not exist)."""
        if await self._dimension(collection) is None:
            return 0
        try:
            result = await self._invoke("count", "count", collection, exact=True)
        except NotFound:
            self._dimensions.pop(collection, None)
            return 0
        return int(result.count)

    async def drop(self, collection: str) -> None:
        """Remove the collection and its points; absent is fine."""
        check_collection(collection)
        self._dimensions.pop(collection, None)
        self._indexed.pop(collection, None)
        await self._absent_ok(collection, "drop", "delete_collection", collection)

    async def ping(self) -> None:
        """Raise DependencyUnavailable if the server does not answer."""
        await self._invoke("ping", "get_collections")

    async def close(self) -> None:
        """Close the client (and its connection pool); idempotent."""
        async with self._connect_lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if isinstance(client, AsyncQdrantClient):
            await client.close()
        elif client is not None:
            await anyio.to_thread.run_sync(client.close, limiter=self._local_limiter)

    async def _dimension(self, collection: str) -> int | None:
        """Dense dimension of the collection, or None if it does not exist."""
        check_collection(collection)
        known = self._dimensions.get(collection)
        if known is not None:
            return known
        if not await self._invoke("open", "collection_exists", collection):
            return None
        try:
            info = await self._invoke("open", "get_collection", collection)
        except NotFound:
            return None
        vectors = info.config.params.vectors
        sparse = info.config.params.sparse_vectors or {}
        dense_params = vectors.get(DENSE) if isinstance(vectors, dict) else None
        if dense_params is None or SPARSE not in sparse:
            raise ConfigurationError(
                f"vector collection {collection!r} exists but was not created by this stack (needs named vectors "
                f"{DENSE!r} and {SPARSE!r}); use another collection name"
            )
        dimension = int(dense_params.size)
        self._dimensions[collection] = dimension
        self._indexed[collection] = set(info.payload_schema or {})
        return dimension

    async def _index_fields(self, collection: str, terms: Sequence[Term]) -> None:
        """Give every filtered payload field a server-side index on first use (local mode has no indexes)."""
        if not self._remote:
            return
        indexed = self._indexed.setdefault(collection, set())
        for term in terms:
            if term.key in indexed:
                continue
            try:
                await self._invoke(
                    "index", "create_payload_index", collection, term.key, field_schema=_schema_type(term), wait=True
                )
            except InvalidRequest:
                # An index of another type exists, or the field cannot be indexed: the filter still works.
                logger.info("payload index not created", extra={"collection": collection, "field": term.key})
            indexed.add(term.key)

    async def _require(self, collection: str) -> int:
        dimension = await self._dimension(collection)
        if dimension is None:
            raise NotFound(f"vector collection {collection!r} does not exist; call ensure_collection first")
        return dimension

    async def _absent_ok(self, collection: str, operation: str, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            await self._invoke(operation, method, *args, **kwargs)
        except NotFound:
            self._dimensions.pop(collection, None)

    async def _connected(self) -> AsyncQdrantClient | QdrantClient:
        """The client, created on first use in a worker thread (local mode reads its files while starting)."""
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._closed:
                raise DependencyUnavailable(self.name, reason="the vector index is closed")
            if self._client is None:
                try:
                    self._client = await anyio.to_thread.run_sync(self._connect, limiter=self._local_limiter)
                except RuntimeError:
                    # Local mode locks its folder; a second client (another process or index) cannot open it.
                    raise ConfigurationError(
                        "the local Qdrant vector store is open elsewhere; local mode is single-process, "
                        "use a Qdrant server"
                    ) from None
            return self._client

    async def _invoke(self, operation: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call one client method (same name on both clients) through the breaker; outages -> unavailable.

        Returns the driver's response model (`Any`: the two clients are not one type); callers convert it at once.
        """
        client = await self._connected()
        bound = getattr(client, method)
        call: Callable[[], Awaitable[Any]]
        if isinstance(client, AsyncQdrantClient):
            call = partial(bound, *args, **kwargs)
        else:
            call = partial(anyio.to_thread.run_sync, partial(bound, *args, **kwargs), limiter=self._local_limiter)
        async with guarded(self._breaker, dependency=self.name, operation=operation):
            try:
                return await call()
            except UnexpectedResponse as exc:
                status = exc.status_code or 0
                if status == 404:
                    raise NotFound("vector collection does not exist") from None
                if 400 <= status < 500 and status != 429:
                    # The server answered: a rejected request is not an outage, so the breaker ignores it.
                    raise InvalidRequest(f"the vector engine rejected the {operation} request") from exc
                raise EngineFailure(operation) from exc
            except _TRANSPORT_ERRORS as exc:
                raise EngineFailure(operation) from exc


def _local_client(path: Path | None, location: str | None) -> QdrantClient:
    """A local-mode client; runs in a worker thread, which is why SQLite's same-thread check is off."""
    if path is not None:
        make_state_dir(path)
        return QdrantClient(path=str(path), force_disable_check_same_thread=True)
    return QdrantClient(location=location, force_disable_check_same_thread=True)


def _schema_type(term: Term) -> models.PayloadSchemaType:
    # bool before int: bool is a subclass of int.
    if isinstance(term.value, bool):
        return models.PayloadSchemaType.BOOL
    if isinstance(term.value, int):
        return models.PayloadSchemaType.INTEGER
    return models.PayloadSchemaType.KEYWORD


def _sparse(vector: SparseVector | None) -> models.SparseVector:
    checked = check_sparse(vector or SparseVector(indices=(), values=()))
    return models.SparseVector(indices=list(checked.indices), values=list(checked.values))


def _qdrant_filter(terms: Sequence[Term]) -> models.Filter:
    conditions: list[models.Condition] = []
    for term in terms:
        if term.values is not None:
            conditions.append(models.FieldCondition(key=term.key, match=models.MatchAny(any=list(term.values))))
        elif term.value is not None:
            conditions.append(models.FieldCondition(key=term.key, match=models.MatchValue(value=term.value)))
    return models.Filter(must=conditions)
