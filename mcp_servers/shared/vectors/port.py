"""The VectorIndex port: what logic needs from a vector engine, whichever Qdrant runs underneath."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

SearchMode = Literal["hybrid", "dense", "lexical"]
FilterValue = str | int | bool | Sequence[str]


@dataclass(frozen=True, slots=True)
class SparseVector:
    """BM25 term weights: hashed token ids and their saturated term frequencies (IDF applied by the engine)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class VectorPoint:
    """One chunk to index. `id` is a UUID string derived deterministically from the chunk's identity."""

    id: str
    dense: Sequence[float]
    sparse: SparseVector
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoredPoint:
    """A search hit: the point id, its fused or raw score, and the stored payload."""

    id: str
    score: float
    payload: Mapping[str, Any]


class VectorIndex(Protocol):
    """A set of named collections of dense (cosine) + BM25 sparse vectors.

    Filters match payload keys exactly; a sequence value means "any of". Hybrid search fuses a dense and a
    lexical prefetch with reciprocal rank fusion. Implementations translate engine errors into
    `DependencyUnavailable` and never block the event loop.
    """

    @property
    def name(self) -> str:
        """Short adapter name for /ready and metrics ("qdrant-edge", "qdrant")."""
        ...

    async def ensure_collection(self, collection: str, dimension: int) -> None:
        """Create the collection if absent; raise ConfigurationError if it exists with another dimension."""
        ...

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points by id (idempotent)."""
        ...

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored."""
        ...

    async def delete_where(self, collection: str, filters: Mapping[str, FilterValue]) -> None:
        """Delete every point whose payload matches the filters."""
        ...

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
        """Best `limit` points, highest score first; `mode` says which vectors are used."""
        ...

    async def count(self, collection: str) -> int:
        """Number of points in the collection (0 if it does not exist)."""
        ...

    async def drop(self, collection: str) -> None:
        """Remove the collection and its points; absent is fine."""
        ...

    async def ping(self) -> None:
        """Raise DependencyUnavailable if the engine cannot answer."""
        ...

    async def close(self) -> None:
        """Release the engine; the index is unusable afterwards."""
        ...
