"""Hybrid's own collections in its vector namespace: write text with dense + BM25 vectors, search them.

Public names (tool arguments) map to engine collection names; `interaction-history` is for admins only. Code and
documents live in AIDB (ingest_path), which augment_query searches first; Hybrid keeps only what it learns.
"""

from collections.abc import Mapping, Sequence
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
# A successful answer to a query mentioning one of these becomes an error solution (matched case-insensitively).
ERROR_HINTS: Final = ("error", "exception", "traceback", "failed", "failure", "crash", "bug")
# A pattern valued at least this is also a best practice.
BEST_PRACTICE_VALUE: Final = 0.8


def looks_like_error(text: str) -> bool:
    """Whether `text` reads like an error report (it mentions one of ERROR_HINTS)."""
    lowered = text.lower()
    return any(hint in lowered for hint in ERROR_HINTS)


def interaction_text(query: str, response: str) -> str:
    """What the interaction history indexes for an interaction."""
    return f"Q: {query}\nA: {response}"


def error_solution_text(query: str, response: str) -> str:
    """What error-solutions indexes for a solved error."""
    return f"Problem: {query}\nSolution: {response}"


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
    return (await put_texts(vectors, embedder, collection, [(key, text, payload or {})]))[0]


async def put_texts(
    vectors: VectorIndex,
    embedder: Embedder,
    collection: Collection,
    items: Sequence[tuple[str, str, Mapping[str, Any]]],
) -> list[str]:
    """Index several (key, text, payload) at once (one embedding call); returns their point ids."""
    if not items:
        return []
    stored = [text[:MAX_STORED_TEXT_CHARS] for _, text, _ in items]
    dense = await embedder.embed_documents(stored)
    points = [
        VectorPoint(
            id=point_id("hybrid", collection, key),
            dense=vector,
            sparse=bm25.document_vector(text),
            payload={**payload, "text": text, "key": key},
        )
        for (key, _, payload), text, vector in zip(items, stored, dense, strict=True)
    ]
    await vectors.upsert(COLLECTIONS[collection], points)
    return [point.id for point in points]


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
