"""Sentence embeddings: the Embedder port, its ONNX and OpenAI-compatible adapters, and their factory."""

from mcp_servers.shared.embeddings.factory import check_dimension, create_embedder
from mcp_servers.shared.embeddings.port import Embedder

__all__ = ["Embedder", "check_dimension", "create_embedder"]
