"""Hybrid's own collections in its vector namespace: write text with dense + BM25 vectors, search them.

Public names (tool arguments) map to engine collection names; `interaction-history` is for admins only. Code and
documents live in AIDB (ingest_path), which augment_query searches first; Hybrid keeps only what it learns.
"""

from collections.abc import Mapping
from typing import Any, Final

from mcp_servers.hybrid.models import Collection, ContextItem
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.vectors import bm25
from mcp_servers.shared.vectors.ids import point_id
from mcp_servers.shared.vectors.port import SearchMode, VectorIndex, VectorPoint

COLLECTIONS: Final[dict[str, str]] = {
    "skills-patterns": "hybrid_skills_patterns",
    "error-solutions": "hybrid_error_solutions",
    "best-practices": "hybrid_best_practices",
    "interaction-history": "hybrid_interaction_history",
}
ADMIN_ONLY: Final = frozenset({"interaction-history"})
# What augment_query draws on besides AIDB; interaction history stays private.
AUGMENT_SOURCES: Final[tuple[Collection, ...]] = (
    "skills-patterns",
    "error-solutions",
    "best-practices",
)
MAX_STORED_TEXT_CHARS: Final = 8000


async def ensure_collections(vectors: VectorIndex, dimension: int) -> None:
    """Create every Hybrid collection (idempotent; a dimension mismatch stops start-up)."""
    for engine_name in COLLECTIONS.values():
        await vectors.ensure_collection(engine_name, dimension)


async def put_text(
    vectors: VectorIndex,
    embedder: Embedder,
    collection: Collection,
    key: str,
    text: str,
    payload: Mapping[str, Any] | None = None,
) -> str:
    """Index `text` under a deterministic id derived from (collection, key); re-indexing replaces it."""
    identifier = point_id("hybrid", collection, key)
    stored = text[:MAX_STORED_TEXT_CHARS]
    dense = await embedder.embed_documents([stored])
    point = VectorPoint(
        id=identifier,
        dense=dense[0],
        sparse=bm25.document_vector(stored),
        payload={**(payload or {}), "text": stored, "key": key},
    )
    await vectors.upsert(COLLECTIONS[collection], [point])
    return identifier


async def search_collection(
    vectors: VectorIndex,
    embedder: Embedder,
    collection: Collection,
    query: str,
    *,
    limit: int,
    mode: SearchMode = "hybrid",
    dense: list[float] | None = None,
) -> list[ContextItem]:
    """Best hits of one collection for `query` (pass `dense` to reuse an embedding)."""
    vector = dense if dense is not None else await embedder.embed_query(query)
    hits = await vectors.search(
        COLLECTIONS[collection],
        dense=vector,
        sparse=bm25.query_vector(query) if mode != "dense" else None,
        mode=mode,
        limit=limit,
    )
    return [
        ContextItem(
            id=f"{collection}:{hit.payload.get('key', hit.id)}",
            source=collection,
            score=hit.score,
            text=str(hit.payload.get("text", "")),
        )
        for hit in hits
    ]
