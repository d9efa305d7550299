"""AIDB's dependencies, opened once per process by the harness lifespan."""

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.harness import Core, ReadinessCheck
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.factory import create_vector_index
from mcp_servers.shared.vectors.port import VectorIndex

CHUNKS_COLLECTION = "aidb_chunks"


@dataclass(frozen=True, slots=True)
class AidbDeps:
    """What AIDB's tools use; owned by the lifespan that created it."""

    settings: StackSettings
    database: Database
    vectors: VectorIndex
    embedder: Embedder

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def embedder_answers() -> None:
            await check_dimension(self.embedder, self.settings.embedder.dimension)

        return {"vectors": self.vectors.ping, "embedder": embedder_answers}


@contextlib.asynccontextmanager
async def open_aidb(core: Core, database: Database) -> AsyncIterator[AidbDeps]:
    """Open the vector index and the embedder; check the embedder's dimension against the collection."""
    settings = core.settings
    embedder = create_embedder(settings, core.breakers)
    try:
        await check_dimension(embedder, settings.embedder.dimension)
        vectors = create_vector_index(settings, core.breakers, namespace="aidb")
        try:
            await vectors.ensure_collection(CHUNKS_COLLECTION, settings.embedder.dimension)
            yield AidbDeps(settings, database, vectors, embedder)
        finally:
            await vectors.close()
    finally:
        await embedder.close()
