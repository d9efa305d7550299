"""What both HTTP LLM adapters share: the client, the breaker, the POST path with its error mapping, and the
`Completion` built from the answer."""

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.llm.port import Completion
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker


class UpstreamError(Exception):
    """An HTTP answer that means the backend itself is failing (5xx, 429, unparseable body: status 0)."""

    def __init__(self, status: int, retry_after_seconds: float | None = None) -> None:
        super().__init__(f"upstream status {status}")
        self.status = status
        self.retry_after_seconds = retry_after_seconds


# What counts against a backend's breaker: a rejected request (4xx) is the caller's fault, not an outage.
BREAKER_FAILURES: tuple[type[BaseException], ...] = (httpx.TransportError, UpstreamError)


def usage_tokens(body: Mapping[str, Any], key: str) -> int | None:
    """A non-negative integer from `body["usage"][key]`, or None when the backend did not report it."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return None
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def llm_breaker(breakers: BreakerRegistry, backend: str) -> CircuitBreaker:
    """The breaker of one LLM backend, named `llm:<backend>` in /ready and metrics."""
    return breakers.get(f"llm:{backend}", failure_types=BREAKER_FAILURES)


def new_client(
    base_url: str,
    headers: Mapping[str, str],
    connect_timeout_seconds: float,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None,
) -> httpx.AsyncClient:
    """The adapter's long-lived client; each call passes its own total timeout."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=dict(headers),
        timeout=httpx.Timeout(60.0, connect=connect_timeout_seconds),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        transport=transport,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def post_json(
    client: httpx.AsyncClient,
    breaker: CircuitBreaker,
    *,
    backend: str,
    path: str,
    body: Mapping[str, Any],
    timeout_seconds: float,
    parse: Any,
) -> Any:
    """POST `body`, check the status, and return `parse(json_body)` — all inside the breaker.

    `parse` raises UpstreamError(0) for a body without an answer, so a broken backend opens its breaker.

    Raises:
        DependencyUnavailable: transport error, timeout, 429, 5xx, malformed body, or open breaker.
        InvalidRequest: any other 4xx (the backend refused this request).
    """
    dependency = f"llm:{backend}"
    try:
        async with breaker:
            response = await client.post(path, json=dict(body), timeout=httpx.Timeout(timeout_seconds))
            if response.status_code == 429 or response.status_code >= 500:
                raise UpstreamError(response.status_code, _retry_after(response))
            if response.status_code >= 400:
                raise InvalidRequest(
                    f"backend {backend} rejected the request (HTTP {response.status_code}); "
                    "shorten the prompt or lower max_tokens"
                )
            try:
                payload = response.json()
            except ValueError:
                raise UpstreamError(0) from None
            return parse(payload)
    except httpx.TimeoutException:
        raise DependencyUnavailable(dependency, reason="timed out") from None
    except httpx.TransportError:
        raise DependencyUnavailable(dependency, reason="connection failed") from None
    except UpstreamError as exc:
        raise DependencyUnavailable(
            dependency,
            retry_after_seconds=exc.retry_after_seconds or 1.0,
            reason=f"HTTP {exc.status}" if exc.status else "malformed response",
        ) from None


class HttpChat:
    """The shared half of a ChatModel over HTTP: a subclass names its headers, builds the body, parses the answer.

    The adapter owns its `httpx.AsyncClient` (closed by `close()`) and uses its backend's breaker from the registry.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        breakers: BreakerRegistry,
        api_key: str | None = None,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._name = name
        self._model = model
        self.breaker: CircuitBreaker = llm_breaker(breakers, name)
        headers = self._headers(api_key)
        self._client = new_client(base_url, headers, connect_timeout_seconds, max_connections, transport)

    def _headers(self, api_key: str | None) -> dict[str, str]:
        """The headers every request of this API carries (its credential among them)."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self._name

    async def _post_completion(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        timeout_seconds: float,
        parse: Callable[[Any], tuple[str, Mapping[str, Any]]],
        usage_keys: tuple[str, str],
    ) -> Completion:
        """POST through `post_json` and build the Completion; `usage_keys` name the prompt and completion counts."""
        started = time.perf_counter()
        text, payload = await post_json(
            self._client,
            self.breaker,
            backend=self._name,
            path=path,
            body=body,
            timeout_seconds=timeout_seconds,
            parse=parse,
        )
        prompt_key, completion_key = usage_keys
        return Completion(
            text=text,
            prompt_tokens=usage_tokens(payload, prompt_key),
            completion_tokens=usage_tokens(payload, completion_key),
            model=str(payload.get("model") or self._model),
            latency_seconds=time.perf_counter() - started,
        )

    async def close(self) -> None:
        await self._client.aclose()
