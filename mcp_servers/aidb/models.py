"""AIDB tool inputs and outputs (module level, so the SDK can resolve them)."""

from pydantic import BaseModel, Field


class StatsResult(BaseModel):
    """Sizes of the knowledge base and the engines behind it."""

    documents: int = Field(description="documents stored in PostgreSQL")
    chunks_indexed: int = Field(description="chunk vectors in the vector index")
    vector_backend: str
    embedder: str
    dimension: int
