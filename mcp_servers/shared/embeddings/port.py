"""The Embedder port: text in, L2-normalised dense vectors out."""

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    """A sentence-embedding model. Vectors are L2-normalised lists of `dimension` floats, never zero-filled.

    Implementations raise `DependencyUnavailable` when the model or endpoint cannot answer and never block the
    event loop.
    """

    @property
    def name(self) -> str:
        """Model identifier for /ready and stats."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""
        ...

    def fits(self, text: str) -> bool:
        """Whether the model reads all of `text` (it cuts longer input off); True when the embedder cannot tell.

        Blocking but cheap (a tokenizer, no model run): the chunker calls it from its worker thread.
        """
        ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed passages (batched internally)."""
        ...

    async def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        ...

    async def close(self) -> None:
        """Release the session or HTTP client."""
        ...
