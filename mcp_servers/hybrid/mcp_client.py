"""Calls to another stack server's tools over MCP (Streamable HTTP, bearer key), behind that server's breaker.

One long-lived HTTP client per downstream server; each call opens a short MCP session on it. Transport
failures and timeouts count against the breaker and surface as `DependencyUnavailable`; a tool error from the
other server is an answer (`InvalidRequest` with its text), not an outage.
"""

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

logger = logging.getLogger(__name__)


class McpToolClient:
    """A client of one downstream MCP server; the owner calls `close()`."""

    def __init__(
        self, *, dependency: str, url: str, http: httpx2.AsyncClient, timeout_seconds: float, breakers: BreakerRegistry
    ) -> None:
        self.dependency = dependency
        self._url = url.rstrip("/")
        if not self._url.endswith("/mcp"):
            self._url += "/mcp"
        self._timeout = timeout_seconds
        self._http = http
        self.breaker: CircuitBreaker = breakers.get(dependency)

    @classmethod
    async def open(
        cls, *, dependency: str, url: str, api_key: str | None, timeout_seconds: float, breakers: BreakerRegistry
    ) -> "McpToolClient":
        """Build the client; its HTTP client is created on a worker thread (loading CA certificates blocks)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        http = await anyio.to_thread.run_sync(lambda: httpx2.AsyncClient(headers=headers, timeout=timeout_seconds))
        return cls(dependency=dependency, url=url, http=http, timeout_seconds=timeout_seconds, breakers=breakers)

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Call `tool` and return its structured content (or `{"text": ...}` for text-only results).

        Raises:
            DependencyUnavailable: unreachable, timed out, protocol failure, or breaker open.
            InvalidRequest: the tool answered with an error.
        """
        try:
            async with self.breaker:
                with anyio.fail_after(self._timeout):
                    async with Client(
                        streamable_http_client(self._url, http_client=self._http), mode="2026-07-28"
                    ) as client:
                        result = await client.call_tool(tool, dict(arguments))
        except DependencyUnavailable:
            raise
        except MCPError as exc:
            raise DependencyUnavailable(self.dependency, reason=f"protocol error {exc.error.code}") from None
        except TimeoutError:
            raise DependencyUnavailable(self.dependency, reason="timed out") from None
        except Exception as exc:  # transport failures arrive as several types (and exception groups)
            logger.info(
                "downstream MCP call failed", extra={"dependency": self.dependency, "error_type": type(exc).__name__}
            )
            raise DependencyUnavailable(self.dependency, reason="connection failed") from None
        text = "\n".join(getattr(block, "text", "") for block in result.content)
        if result.is_error:
            raise InvalidRequest(f"{self.dependency} {tool} failed: {text[:300]}")
        if isinstance(result.structured_content, dict):
            return result.structured_content
        return {"text": text}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._http.aclose()
