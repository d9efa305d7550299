"""Builds the process's one `VectorIndex` from settings; call it from the composition root (a server lifespan)."""

from typing import assert_never

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.vectors import _edge_store
from mcp_servers.shared.vectors._common import EngineFailure
from mcp_servers.shared.vectors.port import VectorIndex

BREAKER_NAME = "vectors"


def create_vector_index(settings: StackSettings, breakers: BreakerRegistry) -> VectorIndex:
    """The configured adapter behind the "vectors" breaker; the caller owns it and must `await index.close()`.

    edge: Qdrant Edge shards in `<vector_path>/edge`. qdrant: the server at `vectors.url`, or qdrant-client local
    mode in `<vector_path>/qdrant-local` when no URL is set (tests and development only).
    """
    # Only engine outages count against the breaker; a rejected request or unknown collection is an answer.
    breaker = breakers.get(BREAKER_NAME, failure_types=(EngineFailure,))
    vectors = settings.vectors
    if vectors.backend == "edge":
        # Adapters import their engine package; import only the one this process uses.
        from mcp_servers.shared.vectors.edge import EdgeVectorIndex

        return EdgeVectorIndex(settings.vector_path / "edge", breaker=breaker)
    if vectors.backend == "qdrant":
        from mcp_servers.shared.vectors.qdrant_server import QdrantServerIndex

        if vectors.url:
            api_key = vectors.api_key.get_secret_value() if vectors.api_key else None
            return QdrantServerIndex(
                url=vectors.url, api_key=api_key, timeout_seconds=vectors.timeout_seconds, breaker=breaker
            )
        return QdrantServerIndex(path=settings.vector_path / "qdrant-local", breaker=breaker)
    assert_never(vectors.backend)


def vector_store_in_use(settings: StackSettings) -> bool:
    """Whether another process holds the embedded Edge store these settings open (blocking; False for a server)."""
    return settings.vectors.backend == "edge" and _edge_store.store_in_use(settings.vector_path / "edge")
