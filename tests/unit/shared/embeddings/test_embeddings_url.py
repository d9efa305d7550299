"""The OpenAI-compatible embedder accepts a base URL with or without `/v1`."""

import pytest

from mcp_servers.shared.embeddings.openai_compat import embeddings_url


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/",
        "http://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/v1/",
        "http://127.0.0.1:8080/v1/embeddings",
    ],
)
def test_embeddings_url_appends_v1_only_when_missing(base_url: str) -> None:
    assert embeddings_url(base_url) == "http://127.0.0.1:8080/v1/embeddings"


def test_embeddings_url_keeps_a_path_prefix() -> None:
    assert embeddings_url("https://gateway.example/ollama") == "https://gateway.example/ollama/v1/embeddings"
