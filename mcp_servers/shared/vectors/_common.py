"""Rules both vector adapters share: names, ids, input checks, filter terms, breaker accounting, fusion constants.

Adapters validate here *before* calling the engine, so an engine error means the engine failed (and counts
against the breaker) rather than that the caller sent something unacceptable.
"""

import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.resilience.breaker import CircuitBreaker
from mcp_servers.shared.vectors.port import FilterValue, SearchMode, SparseVector

DENSE = "dense"
SPARSE = "bm25"
# Standard RRF constant (Cormack et al. 2009); both adapters pass it explicitly so fused scores agree.
RRF_K = 60
# HNSW candidate list at search time (raised to `limit` when larger). Twice Qdrant's usual 64 buys recall on
# real embeddings for well under 1 ms at 100k points (bench/vector_search.py).
SEARCH_HNSW_EF = 128
UPSERT_BATCH = 512

logger = logging.getLogger(__name__)

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class EngineFailure(Exception):
    """Raised inside an adapter when the engine or transport failed; the only error the "vectors" breaker counts.

    Adapters turn it into `DependencyUnavailable` before it reaches a caller.
    """


@dataclass(frozen=True, slots=True)
class Term:
    """One payload condition: `key` equals `value`, or (any_of) equals one of `values`."""

    key: str
    value: str | int | bool | None
    values: tuple[str, ...] | None


def check_collection(name: str) -> str:
    """Return `name` if it is a safe collection name (also a directory name for the Edge adapter)."""
    if not _COLLECTION_NAME.fullmatch(name):
        raise InvalidRequest(
            "collection names are 1-64 characters of letters, digits, '_' and '-', starting with a letter or digit"
        )
    return name


def canonical_id(point_id: str) -> str:
    """Lower-case hyphenated form of a UUID point id; both engines return ids in this form."""
    try:
        return str(uuid.UUID(point_id))
    except (ValueError, AttributeError, TypeError):
        raise InvalidRequest("point ids must be UUID strings (see vectors.ids.point_id)") from None


def check_dense(vector: Sequence[float], dimension: int) -> list[float]:
    """The vector as a list of floats, if it has the collection's dimension and only finite values."""
    if len(vector) != dimension:
        raise InvalidRequest(f"dense vector has {len(vector)} dimensions; the collection expects {dimension}")
    values = [float(x) for x in vector]
    if not all(math.isfinite(x) for x in values):
        raise InvalidRequest("dense vector has NaN or infinite values")
    return values


def check_sparse(vector: SparseVector) -> SparseVector:
    """The vector, if its indices are unique non-negative 32-bit ints paired one-to-one with values."""
    if len(vector.indices) != len(vector.values):
        raise InvalidRequest("sparse vector needs as many values as indices")
    if len(set(vector.indices)) != len(vector.indices):
        raise InvalidRequest("sparse vector indices must be unique")
    if any(not 0 <= index < 2**32 for index in vector.indices):
        raise InvalidRequest("sparse vector indices must be in [0, 2^32)")
    return vector


def check_search(mode: SearchMode, dense: Sequence[float] | None, sparse: SparseVector | None, limit: int) -> None:
    """Reject a search whose mode lacks the vector it needs, or a non-positive limit."""
    if limit < 1:
        raise InvalidRequest("limit must be at least 1")
    if mode in ("dense", "hybrid") and dense is None:
        raise InvalidRequest(f"{mode} search needs a dense query vector")
    if mode in ("lexical", "hybrid") and sparse is None:
        raise InvalidRequest(f"{mode} search needs a sparse query vector")


def prefetch_limit(limit: int) -> int:
    """How many candidates each side of a hybrid search contributes to fusion."""
    return max(limit * 4, 40)


def filter_terms(filters: Mapping[str, FilterValue] | None) -> list[Term] | None:
    """Payload conditions as terms; None when some any-of list is empty, i.e. nothing can match."""
    terms: list[Term] = []
    for key, value in (filters or {}).items():
        if not key:
            raise InvalidRequest("filter keys must be non-empty payload keys")
        if isinstance(value, str | int | bool):
            terms.append(Term(key=key, value=value, values=None))
        elif isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
            if not value:
                return None
            terms.append(Term(key=key, value=None, values=tuple(value)))
        else:
            raise InvalidRequest(f"filter {key!r}: values are a string, integer, boolean or a list of strings")
    return terms


@asynccontextmanager
async def guarded(breaker: CircuitBreaker | None, *, dependency: str, operation: str) -> AsyncIterator[None]:
    """Enter the breaker (if any) around one engine call.

    `EngineFailure` inside counts as a failure and leaves as `DependencyUnavailable(dependency)`, logged with its
    cause (both adapters' one mapping of an engine error).
    """
    try:
        if breaker is None:
            yield
        else:
            async with breaker:
                yield
    except EngineFailure as exc:
        logger.warning(
            "vector engine call failed",
            extra={"dependency": dependency, "operation": operation},
            exc_info=exc.__cause__,
        )
        raise DependencyUnavailable(dependency, reason=f"{operation} failed") from exc
