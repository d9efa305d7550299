"""Build the configured embedder (the composition root calls this once) and check its dimension at start-up."""

from typing import assert_never

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.embeddings.openai_compat import FAILURE_TYPES as OPENAI_FAILURE_TYPES
from mcp_servers.shared.embeddings.openai_compat import OpenAIEmbedder
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.resilience.breaker import BreakerRegistry

BREAKER_NAME = "embedder"
PROBE_TEXT = "dimension probe"


def create_embedder(settings: StackSettings, breakers: BreakerRegistry) -> Embedder:
    """The embedder chosen by `settings.embedder.backend`, each call guarded by the "embedder" breaker.

    Nothing is loaded or connected yet; the caller owns the embedder and must `await embedder.close()`.
    """
    embedder_settings = settings.embedder
    backend = embedder_settings.backend
    if backend == "onnx":
        # onnxruntime and tokenizers pull in ~100 MB of native code: import them only when this backend is chosen.
        from mcp_servers.shared.embeddings.onnx import FAILURE_TYPES as ONNX_FAILURE_TYPES
        from mcp_servers.shared.embeddings.onnx import OnnxEmbedder

        return OnnxEmbedder(embedder_settings, breaker=breakers.get(BREAKER_NAME, failure_types=ONNX_FAILURE_TYPES))
    if backend == "openai":
        return OpenAIEmbedder(embedder_settings, breaker=breakers.get(BREAKER_NAME, failure_types=OPENAI_FAILURE_TYPES))
    assert_never(backend)


async def check_dimension(embedder: Embedder, expected: int) -> None:
    """Embed a probe text and raise ConfigurationError unless the vector has `expected` dimensions.

    Call it at start-up with the dimension of every collection, so a model change never writes mismatched vectors.
    This also loads the local model or reaches the endpoint, so configuration errors surface before serving.
    """
    actual = len(await embedder.embed_query(PROBE_TEXT))
    if actual != expected or embedder.dimension != expected:
        raise ConfigurationError(
            f"embedder {embedder.name!r} returns {actual}-dimensional vectors but {expected} are expected; set "
            f"MCP_STACK_EMBEDDER__DIMENSION={actual} and reindex, or configure a {expected}-dimensional model"
        )
