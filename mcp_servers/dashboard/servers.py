"""The dashboard's view of the stack servers, through their public interfaces only.

HTTP: `/health`, `/ready`, `/metrics`, Hybrid's `/learning/stats`; MCP: tools and resources over Streamable HTTP
with the SDK client, pinned to the stateless 2026-07-28 era (no session to lose when a server restarts). One
long-lived HTTP client per server carries the service API key; each server has its own breaker here.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, TextResourceContents

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest, RateLimited
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

logger = logging.getLogger(__name__)

SERVER_NAMES: Final = ("aidb", "hybrid", "ralph")
ERA: Final = "2026-07-28"
_TRANSPORT_ERRORS: Final = (httpx2.HTTPError, OSError)


class _Failure(Exception):
    """A transport failure (counts for the breaker)."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """Status and JSON body (None when the body is not JSON) of a plain HTTP call."""

    status: int
    body: Any
    text: str


def _text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


class ServerLink:
    """One stack server reached over HTTP and MCP. Owns its HTTP client: close it with `aclose`."""

    def __init__(self, name: str, base_url: str, http: httpx2.AsyncClient, breaker: CircuitBreaker, timeout: float):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._http = http
        self.breaker = breaker
        self._timeout = timeout

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str) -> HttpAnswer:
        """GET a path of the server; any HTTP status is an answer, only transport failures count as an outage.

        Raises:
            DependencyUnavailable: unreachable, timed out, or the breaker is open.
        """
        try:
            async with self.breaker:
                try:
                    with anyio.fail_after(self._timeout):
                        response = await self._http.get(f"{self.base_url}{path}")
                except _TRANSPORT_ERRORS as exc:
                    raise _Failure(type(exc).__name__) from exc
        except _Failure as exc:
            raise DependencyUnavailable(self.name, reason=f"GET {path}: {exc}") from None
        except TimeoutError:
            raise DependencyUnavailable(self.name, reason=f"GET {path}: timed out") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return HttpAnswer(response.status_code, body, response.text)

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool and return its structured result.

        Raises:
            DependencyUnavailable: unreachable, timed out, refused, or the breaker is open.
            RateLimited: the server's rate limit refused the dashboard's key.
            InvalidRequest: the tool answered with an error (its text is the message).
        """
        result = await self._mcp(lambda client: client.call_tool(tool, arguments), tool)
        assert isinstance(result, CallToolResult)
        if result.is_error:
            raise InvalidRequest(f"{self.name} {tool}: {_text_of(result)[:500]}")
        if isinstance(result.structured_content, dict):
            return result.structured_content
        text = _text_of(result)
        try:
            parsed = json.loads(text)
        except ValueError:
            return {"text": text}
        return parsed if isinstance(parsed, dict) else {"result": parsed}

    async def read_resource(self, uri: str) -> str:
        """The text of a resource."""
        result = await self._mcp(lambda client: client.read_resource(uri), uri)
        return "".join(item.text for item in result.contents if isinstance(item, TextResourceContents))

    async def _mcp(self, operation: Any, what: str) -> Any:
        try:
            async with self.breaker:
                return await self._session(operation)
        except _Failure as exc:
            raise DependencyUnavailable(self.name, reason=f"{what}: {exc}") from None
        except TimeoutError:
            raise DependencyUnavailable(self.name, reason=f"{what}: timed out") from None
        except MCPError as exc:
            data = exc.error.data if isinstance(exc.error.data, dict) else {}
            retry = float(data.get("retry_after_seconds", 5.0))
            if exc.error.code == RATE_LIMITED:
                raise RateLimited(retry_after_seconds=retry, limit_key=f"{self.name}:{what}") from None
            raise DependencyUnavailable(
                self.name, retry_after_seconds=retry, reason=f"{what} refused (code {exc.error.code})"
            ) from None

    async def _session(self, operation: Any) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                transport = streamable_http_client(
                    f"{self.base_url}/mcp", http_client=self._http, terminate_on_close=False
                )
                async with Client(transport, mode=ERA) as client:
                    return await operation(client)
        except ExceptionGroup as group:
            # The SDK's transport task group wraps connection errors; unwrap the ones that mean "unreachable".
            failure = group.subgroup(_TRANSPORT_ERRORS)
            if failure is None:
                raise
            raise _Failure(type(failure.exceptions[0]).__name__) from group
        except _TRANSPORT_ERRORS as exc:
            raise _Failure(type(exc).__name__) from exc


def server_urls(settings: StackSettings) -> dict[str, str]:
    """Base URL of each server: the dashboard setting, else the host and port the stack serves it on."""
    urls = {}
    for name in SERVER_NAMES:
        configured: str | None = getattr(settings.dashboard, f"{name}_url")
        port = getattr(settings.http, f"{name}_port")
        host = settings.http.host if settings.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
        urls[name] = configured or f"http://{host}:{port}"
    return urls


async def open_links(settings: StackSettings, breakers: BreakerRegistry) -> dict[str, ServerLink]:
    """One link per server; the caller closes them."""
    key = settings.dashboard.service_api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
    timeout = settings.dashboard.request_timeout_seconds
    links: dict[str, ServerLink] = {}
    for name, url in server_urls(settings).items():
        # Building a client loads CA certificates from disk: off the event loop.
        http = await anyio.to_thread.run_sync(
            lambda: httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(timeout, connect=min(5.0, timeout)),
                limits=httpx2.Limits(max_connections=16, max_keepalive_connections=4),
            )
        )
        breaker = breakers.get(name, failure_types=(_Failure, TimeoutError))
        links[name] = ServerLink(name, url, http, breaker, timeout)
    return links
