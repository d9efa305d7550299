"""Search: dense, lexical (BM25) or hybrid over chunks, one hit per document, paginated by cursor.

Hybrid runs both searches and mixes each document's calibrated scores: 0.5 x cosine + 0.5 x bm25 / (bm25 + 40).
No per-query normalisation, so a score means the same across queries and `min_score` can drop weak or nonsense
matches (SUGGESTED_MIN_SCORE); it retrieved as well as the earlier per-query min-max mix and better than
reciprocal rank fusion on our measured sets (docs/decisions.md).

The vector index proposes chunks; PostgreSQL confirms them, so a deleted document or a replaced chunk is never
returned even before the indexer has caught up. A ranking is cached per query and generation: later pages of
the same query come from the same ranking snapshot (kept 15 minutes in this process), so pages never repeat or
skip a hit even when documents change in between; hits deleted since are dropped. Should the snapshot be gone
(another replica, a restart), the cursor's last (score, document id) continues a fresh ranking.
"""

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp_servers.aidb import store
from mcp_servers.aidb.cache import GenerationCache, LruCache
from mcp_servers.aidb.inputs import check_filters, check_query
from mcp_servers.aidb.models import Provenance, SearchHit, SearchRequest, SearchResult
from mcp_servers.aidb.points import CHUNKS_COLLECTION, chunk_filters
from mcp_servers.aidb.store import ChunkRecord
from mcp_servers.shared.concurrency import both
from mcp_servers.shared.cursors import decode_cursor, encode_cursor, fingerprint
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.bm25 import query_vector
from mcp_servers.shared.vectors.port import ScoredPoint, SparseVector, VectorIndex

SNAPSHOT_TTL_SECONDS = 900.0
HYBRID_DEPTH = 100
DEFAULT_DENSE_WEIGHT = 0.5
#: BM25 score at which a document's lexical half reaches 0.5 (bm25 / (bm25 + c)); measured by bench/fusion_sweep.py.
DEFAULT_LEXICAL_SATURATION = 40.0
#: A hybrid min_score that drops off-topic and gibberish queries' hits and keeps real ones' top hits (measured on
#: the stdlib and long-document sets: nonsense queries' top scores at most 0.18 / 0.25; docs/performance.md).
SUGGESTED_MIN_SCORE = 0.3
SNAPSHOT_MAX = 1024
#: Weight of the latest search in the remembered candidates-per-document ratio (see `Searcher._rank`).
_RATIO_WEIGHT = 0.25


@dataclass(frozen=True, slots=True)
class Ranked:
    """A document's best chunk and its score."""

    score: float
    chunk: ChunkRecord


@dataclass(frozen=True, slots=True)
class Ranking:
    """Ranked documents of one query at one generation; `complete` when nothing lies beyond them."""

    items: tuple[Ranked, ...]
    complete: bool
    generation: int


#: The query's vector embedded while the generation was read: None (not embedded), or why it could not be.
Prefetched = list[float] | DependencyUnavailable | None


def _order_key(item: Ranked) -> tuple[float, str]:
    return (-item.score, item.chunk.document_id)


class Searcher:
    """Runs searches for one process: owns the ranking cache and the query-embedding cache."""

    def __init__(
        self,
        database: Database,
        vectors: VectorIndex,
        embedder: Embedder,
        cache: GenerationCache[Ranking],
        *,
        max_candidates: int,
        dense_weight: float = DEFAULT_DENSE_WEIGHT,
        lexical_saturation: float = DEFAULT_LEXICAL_SATURATION,
    ) -> None:
        self._dense_weight = dense_weight
        self._lexical_saturation = lexical_saturation
        self._database = database
        self._vectors = vectors
        self._embedder = embedder
        self._cache = cache
        self._max_candidates = max_candidates
        self._query_vectors: LruCache[list[float]] = LruCache(1024)
        # Chunk candidates a search looked at per distinct document it found, averaged over recent searches: long
        # documents put dozens of chunks among the candidates, so the first round starts that much deeper.
        self._candidates_per_document = 1.0
        # Rankings that later pages are served from, by snapshot id; a plain TTL (generation fixed at 0).
        self._snapshots: GenerationCache[Ranking] = GenerationCache(SNAPSHOT_TTL_SECONDS, SNAPSHOT_MAX)

    @property
    def cache(self) -> GenerationCache[Ranking]:
        """The ranking cache (for stats)."""
        return self._cache

    async def embed_query(self, query: str) -> list[float]:
        """The query's dense vector, from the LRU when the same text was embedded before."""
        vector = self._query_vectors.get(query)
        if vector is None:
            vector = await self._embedder.embed_query(query)
            self._query_vectors.put(query, vector)
        return vector

    async def search(self, request: SearchRequest) -> SearchResult:
        """One page of hits after `request.cursor`, best first."""
        query = check_query(request.query)
        check_filters(request.filters)
        key = fingerprint(
            query, request.mode, request.project, request.kind, dict(request.filters or {}), request.min_score
        )
        position = decode_cursor(request.cursor, "search", key) if request.cursor else None
        generation, prefetched = await self._generation(query, embed=position is None and request.mode != "lexical")
        returned = 0
        snapshot_id = uuid.uuid4().hex[:16]
        ranking: Ranking | None = None
        offset = 0
        cached = False
        if position is not None:
            try:
                after = (float(position["s"]), str(position["d"]))
                returned = int(position["n"])
                snapshot = self._snapshots.get(str(position["r"]), 0)
                saved_offset = int(position["o"])
            except (KeyError, TypeError, ValueError):
                raise InvalidRequest("cursor is not valid; pass next_cursor from the previous page unchanged") from None
            if snapshot is not None and (snapshot.complete or len(snapshot.items) > saved_offset + request.limit):
                # The ranking the first page came from: later writes cannot shift, repeat or skip hits.
                ranking, offset, snapshot_id, cached = snapshot, saved_offset, str(position["r"]), True
        if ranking is None:
            # One document past the page says whether another page exists. The first round usually finds more
            # (100 chunks a side), and all of it is kept for later pages; asking for 3 pages' worth of documents
            # made long documents (dozens of chunks among the candidates) search 2-3 rounds deeper every time.
            need = returned + request.limit + 1
            ranking = self._cache.get(key, generation)
            cached = ranking is not None and (ranking.complete or len(ranking.items) >= need)
            if ranking is None or not cached:
                ranking = await self._rank(query, request, need, generation, prefetched)
                self._cache.put(key, generation, ranking)
            if position is not None:
                # The snapshot expired: continue after the last hit's (score, id) in a fresh ranking.
                offset = next(
                    (i for i, item in enumerate(ranking.items) if _order_key(item) > (-after[0], after[1])),
                    len(ranking.items),
                )
        page, scanned = await self._live_page(ranking, offset, request.limit, generation)
        end = offset + scanned
        next_cursor = None
        if page and (end < len(ranking.items) or not ranking.complete):
            last = page[-1]
            self._snapshots.put(snapshot_id, 0, ranking)
            next_cursor = encode_cursor(
                "search",
                key,
                {"r": snapshot_id, "o": end, "s": last.score, "d": last.chunk.document_id, "n": returned + len(page)},
            )
        return SearchResult(
            hits=[_hit(item) for item in page], next_cursor=next_cursor, mode=request.mode, cached=cached
        )

    async def _generation(self, query: str, *, embed: bool) -> tuple[int, Prefetched]:
        """The index generation, read before any engine read, and for a first page the query's vector, embedded
        meanwhile (that reads no index state; ~0.4 ms saved a search)."""
        if not embed:
            return await store.generation(self._database), None

        async def prefetch_vector() -> Prefetched:
            # A cached ranking needs no vector: an unavailable embedder fails the search only if `_rank` runs.
            try:
                return await self.embed_query(query)
            except DependencyUnavailable as exc:
                return exc

        return await both(partial(store.generation, self._database), prefetch_vector)

    async def _live_page(self, ranking: Ranking, offset: int, limit: int, generation: int) -> tuple[list[Ranked], int]:
        """Up to `limit` items from `offset`, skipping documents deleted or changed since the ranking was made."""
        items = ranking.items
        if ranking.generation == generation:
            fresh = list(items[offset : offset + limit])
            return fresh, len(fresh)
        page: list[Ranked] = []
        scanned = 0
        while len(page) < limit and offset + scanned < len(items):
            batch = items[offset + scanned : offset + scanned + limit - len(page)]
            live = await store.chunks_by_point(self._database, [item.chunk.point_id for item in batch])
            page.extend(item for item in batch if item.chunk.point_id in live)
            scanned += len(batch)
        return page, scanned

    async def _best_live(self, *sides: Sequence[ScoredPoint]) -> list[dict[str, Ranked]]:
        """Each side's live documents with their best live chunk, in hit order (the engine returns hits best first).

        Only each document's best hit is confirmed in PostgreSQL (a long document puts dozens of chunks among the
        candidates, and fetching them all was most of a search); a document whose best hit is gone (replaced
        while the index catches up) has its next hits confirmed in a further round.
        """
        best: list[dict[str, Ranked]] = [{} for _ in sides]
        pending: list[list[ScoredPoint]] = [list(hits) for hits in sides]
        while any(pending):
            firsts: list[dict[str, ScoredPoint]] = []
            later: list[list[ScoredPoint]] = []
            for found, hits in zip(best, pending, strict=True):
                first: dict[str, ScoredPoint] = {}
                rest: list[ScoredPoint] = []
                for hit in hits:
                    document = _document_of(hit)
                    if document in found:
                        continue
                    if document in first:
                        rest.append(hit)
                    else:
                        first[document] = hit
                firsts.append(first)
                later.append(rest)
            live = await store.chunks_by_point(
                self._database, list({hit.id for first in firsts for hit in first.values()})
            )
            for found, first in zip(best, firsts, strict=True):
                for hit in first.values():
                    chunk = live.get(hit.id)
                    if chunk is not None:
                        found.setdefault(chunk.document_id, Ranked(score=float(hit.score), chunk=chunk))
            pending = [
                [hit for hit in rest if _document_of(hit) not in found] for found, rest in zip(best, later, strict=True)
            ]
        return best

    async def _hybrid(
        self, query: str, dense: list[float] | None, sparse: SparseVector, depth: int, filters: Mapping[str, Any] | None
    ) -> tuple[dict[str, Ranked], bool, list[float]]:
        """Dense and lexical candidates fused per document; exhausted if both ran dry. The lexical search runs
        while the query is embedded (it needs no vector); returns the query's vector for a deeper round."""

        async def dense_side() -> tuple[list[float], list[ScoredPoint]]:
            vector = dense if dense is not None else await self.embed_query(query)
            hits = await self._vectors.search(
                CHUNKS_COLLECTION, dense=vector, sparse=None, mode="dense", limit=depth, filters=filters
            )
            return vector, hits

        async def lexical_side() -> list[ScoredPoint]:
            return await self._vectors.search(
                CHUNKS_COLLECTION, dense=None, sparse=sparse, mode="lexical", limit=depth, filters=filters
            )

        (vector, dense_hits), lexical_hits = await both(dense_side, lexical_side)
        dense_best, lexical_best = await self._best_live(dense_hits, lexical_hits)
        fused = fuse(dense_best, lexical_best, self._dense_weight, self._lexical_saturation)
        exhausted = len(dense_hits) < depth and len(lexical_hits) < depth
        return fused, exhausted, vector

    async def _rank(
        self, query: str, request: SearchRequest, need: int, generation: int, prefetched: Prefetched
    ) -> Ranking:
        sparse: SparseVector | None = query_vector(query) if request.mode in ("lexical", "hybrid") else None
        mode = request.mode
        if sparse is not None and not sparse.indices:
            if mode == "lexical":
                raise InvalidRequest("query has no searchable words for lexical search (only stop words or symbols)")
            # Nothing for BM25 to match: hybrid degrades to its dense half rather than failing.
            mode, sparse = "dense", None
        if isinstance(prefetched, DependencyUnavailable) and mode != "lexical":
            raise prefetched  # the same failure again, not a second attempt on a failing embedder
        dense = prefetched if isinstance(prefetched, list) else None
        if dense is None and mode == "dense":
            dense = await self.embed_query(query)
        filters = chunk_filters(request.project, request.kind, request.filters) or None
        # Hybrid looks at a fixed minimum depth on each side, so a document found by both gets both halves.
        floor = HYBRID_DEPTH if mode == "hybrid" else 30
        start = max(need * 3, floor, math.ceil(need * self._candidates_per_document))
        chunk_limit = min(self._max_candidates, start)
        while True:
            if mode == "hybrid":
                assert sparse is not None
                best, exhausted, dense = await self._hybrid(query, dense, sparse, chunk_limit, filters)
            else:
                hits = await self._vectors.search(
                    CHUNKS_COLLECTION, dense=dense, sparse=sparse, mode=mode, limit=chunk_limit, filters=filters
                )
                (best,) = await self._best_live(hits)
                exhausted = len(hits) < chunk_limit
            if len(best) >= need or exhausted or chunk_limit >= self._max_candidates:
                break
            # As deep as this round's yield says `need` documents take (a further round costs more than depth).
            deeper = math.ceil(chunk_limit * need / max(1, len(best)) * 1.25)
            chunk_limit = min(self._max_candidates, max(chunk_limit * 2, deeper))
        if best and not exhausted:
            observed = chunk_limit / len(best)
            self._candidates_per_document += _RATIO_WEIGHT * (observed - self._candidates_per_document)
        items = sorted(best.values(), key=_order_key)
        complete = exhausted
        if request.min_score is not None:
            kept = [item for item in items if item.score >= request.min_score]
            complete = complete or len(kept) < len(items)
            items = kept
        return Ranking(items=tuple(items), complete=complete, generation=generation)


def _document_of(hit: ScoredPoint) -> str:
    """The document a hit belongs to, from its payload (its own id if the payload lacks one)."""
    return str(hit.payload.get("document_id") or hit.id)


def fuse(
    dense: Mapping[str, Ranked],
    lexical: Mapping[str, Ranked],
    dense_weight: float,
    lexical_saturation: float = DEFAULT_LEXICAL_SATURATION,
) -> dict[str, Ranked]:
    """Each document's `dense_weight * cosine + (1 - dense_weight) * bm25 / (bm25 + lexical_saturation)`.

    Both halves are fixed functions of the engine's scores (cosine in [-1, 1], BM25 saturated into [0, 1)), not
    rescaled per query, so a hybrid score is comparable across queries: a query nothing matches scores low.
    Measured by bench/fusion_sweep.py: MRR@10 0.656 on the stdlib set (the per-query min-max mix it replaced
    0.652, dense alone 0.604) and 0.746 on the long-document set's Vim and Node.js documents (0.732; dense 0.629).
    """
    fused: dict[str, Ranked] = {}
    for doc in dense.keys() | lexical.keys():
        cosine = dense[doc].score if doc in dense else 0.0
        bm25 = max(0.0, lexical[doc].score) if doc in lexical else 0.0
        score = dense_weight * cosine + (1.0 - dense_weight) * bm25 / (bm25 + lexical_saturation)
        # The chunk shown is the one that matched by meaning, else the one that matched by words.
        chunk = (dense.get(doc) or lexical[doc]).chunk
        fused[doc] = Ranked(score=score, chunk=chunk)
    return fused


def _hit(item: Ranked) -> SearchHit:
    chunk = item.chunk
    return SearchHit(
        document_id=chunk.document_id,
        title=chunk.title,
        text=chunk.text,
        score=item.score,
        metadata=chunk.metadata,
        provenance=Provenance(
            source=chunk.source,
            chunk_index=chunk.chunk_index,
            heading=chunk.heading,
            start_line=chunk.start_line,
            project=chunk.project,
            kind=chunk.kind,
            updated_at=chunk.updated_at.isoformat(),
        ),
    )
