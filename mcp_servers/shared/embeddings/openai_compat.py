"""Embedder over an OpenAI-compatible `POST /v1/embeddings` endpoint (llama.cpp, Ollama, vLLM, TEI, OpenAI).

One long-lived `httpx.AsyncClient`, owned by the adapter and closed by `close()`. Transport errors are retried a
few times (embedding is idempotent); every vector is checked against `settings.dimension` and L2-normalised.
"""

import contextlib
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from mcp_servers.shared.config import EmbedderSettings
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable, InvalidRequest
from mcp_servers.shared.resilience.breaker import CircuitBreaker

logger = logging.getLogger(__name__)

DEPENDENCY = "embedder"
MAX_ATTEMPTS = 3
_CONNECT_TIMEOUT_SECONDS = 5.0
_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=30.0)
# A timed-out read already waited the full timeout; retrying it would multiply the caller's wait.
_NOT_RETRIED = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)


class _ServerError(Exception):
    """The endpoint answered 5xx."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


#: Exceptions that count as embedder failures for the circuit breaker.
FAILURE_TYPES: tuple[type[BaseException], ...] = (httpx.TransportError, _ServerError)


class _Item(BaseModel):
    index: int
    embedding: list[float]


class _Response(BaseModel):
    data: list[_Item]


def embeddings_url(base_url: str) -> str:
    """`{base}/v1/embeddings` for a base URL given with or without `/v1` (or already ending in `/embeddings`)."""
    url = base_url.rstrip("/")
    if url.endswith("/v1/embeddings"):
        return url
    if url.endswith("/v1"):
        return f"{url}/embeddings"
    return f"{url}/v1/embeddings"


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, httpx.TransportError) and not isinstance(error, _NOT_RETRIED)


class OpenAIEmbedder:
    """Remote sentence embedder; it owns its HTTP client, which `close()` closes."""

    def __init__(self, settings: EmbedderSettings, *, breaker: CircuitBreaker | None = None) -> None:
        """Create the client (no request is made until the first embedding).

        Args:
            breaker: wraps every HTTP request (with its retries); None in tests that exercise the adapter alone.
        """
        if not settings.url:
            raise ConfigurationError("MCP_STACK_EMBEDDER__URL is required when MCP_STACK_EMBEDDER__BACKEND=openai")
        self._settings = settings
        self._url = embeddings_url(settings.url)
        self._breaker = breaker
        headers = {"Accept": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        timeout = httpx.Timeout(
            settings.timeout_seconds, connect=min(_CONNECT_TIMEOUT_SECONDS, settings.timeout_seconds)
        )
        self._client = httpx.AsyncClient(timeout=timeout, limits=_LIMITS, headers=headers)

    @property
    def name(self) -> str:
        """Model identifier for /ready and stats."""
        return self._settings.model

    @property
    def dimension(self) -> int:
        """Length every returned vector must have (`settings.dimension`)."""
        return self._settings.dimension

    def fits(self, text: str) -> bool:
        """Always True: the endpoint's tokenizer and limit are not known here (the server truncates)."""
        return True

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed passages, `batch_size` per request; order is preserved.

        Raises:
            DependencyUnavailable: the endpoint is unreachable, overloaded, failing or answers nonsense.
            ConfigurationError: wrong URL, model, key, or vectors of another dimension than configured.
            InvalidRequest: the endpoint rejected the input itself (e.g. too long).
        """
        vectors: list[list[float]] = []
        batch_size = self._settings.batch_size
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            vectors.extend(self._parse(await self._post(batch), len(batch)))
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return (await self.embed_documents([text]))[0]

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    def _guard(self) -> AbstractAsyncContextManager[object]:
        return self._breaker if self._breaker is not None else contextlib.nullcontext()

    async def _post(self, batch: list[str]) -> httpx.Response:
        body = {"model": self._settings.model, "input": batch}
        try:
            async with self._guard():
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(_is_retryable),
                    stop=stop_after_attempt(MAX_ATTEMPTS),
                    wait=wait_exponential(multiplier=0.1, max=1.0),
                    reraise=True,
                ):
                    with attempt:
                        response = await self._client.post(self._url, json=body)
                if response.status_code >= 500:
                    raise _ServerError(response.status_code)
        except httpx.TransportError as exc:
            logger.warning("embedding endpoint unreachable", extra={"error_type": type(exc).__name__})
            raise DependencyUnavailable(DEPENDENCY, reason=f"endpoint unreachable ({type(exc).__name__})") from exc
        except _ServerError as exc:
            logger.warning("embedding endpoint failed", extra={"status_code": exc.status_code})
            raise DependencyUnavailable(DEPENDENCY, reason=f"endpoint answered HTTP {exc.status_code}") from exc
        self._raise_for_client_error(response)
        return response

    def _raise_for_client_error(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 429:
            raise DependencyUnavailable(
                DEPENDENCY, retry_after_seconds=_retry_after(response), reason="endpoint is rate limiting"
            )
        if status in (401, 403):
            raise ConfigurationError(
                f"embedding endpoint refused the credentials (HTTP {status}); check MCP_STACK_EMBEDDER__API_KEY"
            )
        if status in (404, 405):
            raise ConfigurationError(
                f"embedding endpoint has no embeddings route or model (HTTP {status}); check "
                "MCP_STACK_EMBEDDER__URL and MCP_STACK_EMBEDDER__MODEL"
            )
        raise InvalidRequest(f"embedding endpoint rejected the input (HTTP {status})")

    def _parse(self, response: httpx.Response, expected_count: int) -> list[list[float]]:
        try:
            items = _Response.model_validate_json(response.content).data
        except ValidationError as exc:
            raise DependencyUnavailable(DEPENDENCY, reason="endpoint returned a malformed response") from exc
        items.sort(key=lambda item: item.index)
        if [item.index for item in items] != list(range(expected_count)):
            raise DependencyUnavailable(DEPENDENCY, reason="endpoint returned the wrong number of embeddings")
        for item in items:
            if len(item.embedding) != self._settings.dimension:
                raise ConfigurationError(
                    f"embedding model {self._settings.model!r} returns {len(item.embedding)}-dimensional vectors "
                    f"but MCP_STACK_EMBEDDER__DIMENSION={self._settings.dimension}; set it to match the model "
                    "and reindex"
                )
        matrix = np.array([item.embedding for item in items], dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            # Never hand out a zero or NaN vector: it would silently match nothing (or everything).
            raise DependencyUnavailable(DEPENDENCY, reason="endpoint returned a zero or non-finite vector")
        normalised: list[list[float]] = (matrix / norms).tolist()
        return normalised


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "1")), 0.1)
    except ValueError:
        # Retry-After may also be an HTTP date; a short fixed wait is good enough for an embedding call.
        return 1.0
