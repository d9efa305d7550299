"""Calls to another stack server's tools over Streamable HTTP (MCP SDK client), behind that server's breaker.

One long-lived HTTP client per downstream server carries its bearer key; each call opens a light MCP client
on it pinned to the stateless 2026-07-28 era (no handshake, no session to lose when the server restarts).
Transport failures and timeouts count for the breaker and reach callers as DependencyUnavailable; a tool
that answers with an error is an answer (DownstreamToolError), not an outage.
"""

import logging
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent

from mcp_servers.shared.errors import DependencyUnavailable, StackError
from mcp_servers.shared.resilience.breaker import BreakerRegistry

logger = logging.getLogger(__name__)

ERA: Final = "2026-07-28"
_TRANSPORT_ERRORS: Final = (httpx2.HTTPError, OSError)


class DownstreamToolError(StackError):
    """Raised when a downstream tool answers with isError; the message is the tool's own text."""


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """A successful tool result: its structured content (if any) and its text."""

    structured: dict[str, Any] | None
    text: str


def _text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


class _Failure(Exception):
    """A transport failure unwrapped from the SDK's task-group exception group (counts for the breaker)."""


class DownstreamServer:
    """A stack server reached over MCP. Owns its HTTP client: close it with `aclose`."""

    def __init__(
        self, name: str, url: str, api_key: str | None, breakers: BreakerRegistry, *, timeout_seconds: float
    ) -> None:
        self.name = name
        self._url = url.rstrip("/") if url.rstrip("/").endswith("/mcp") else url.rstrip("/") + "/mcp"
        self._timeout = timeout_seconds
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx2.AsyncClient(
            headers=headers,
            timeout=httpx2.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx2.Limits(max_connections=32, max_keepalive_connections=8),
        )
        self._breaker = breakers.get(name, failure_types=(_Failure, TimeoutError))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call_tool(
        self, tool: str, arguments: dict[str, Any], *, timeout_seconds: float | None = None
    ) -> ToolAnswer:
        """Call one tool and return its answer.

        Raises:
            DependencyUnavailable: the server is unreachable, timed out, refused the request, or its breaker is open.
            DownstreamToolError: the tool ran and reported an error.
        """
        timeout = timeout_seconds or self._timeout
        try:
            async with self._breaker:
                result = await self._call(tool, arguments, timeout)
        except TimeoutError:
            raise DependencyUnavailable(self.name, reason=f"{tool} timed out") from None
        except _Failure as exc:
            raise DependencyUnavailable(self.name, reason=str(exc)) from None
        except MCPError as exc:
            # A protocol-level refusal (unknown tool, scope, rate limit): the server is up but will not serve us.
            retry = exc.error.data.get("retry_after_seconds", 5.0) if isinstance(exc.error.data, dict) else 5.0
            raise DependencyUnavailable(
                self.name, retry_after_seconds=float(retry), reason=f"{tool} refused (code {exc.error.code})"
            ) from None
        if result.is_error:
            raise DownstreamToolError(f"{self.name} {tool}: {_text_of(result)[:500]}")
        structured = result.structured_content if isinstance(result.structured_content, dict) else None
        return ToolAnswer(structured, _text_of(result))

    async def _call(self, tool: str, arguments: dict[str, Any], seconds: float) -> CallToolResult:
        try:
            with anyio.fail_after(seconds):
                transport = streamable_http_client(self._url, http_client=self._http, terminate_on_close=False)
                async with Client(transport, mode=ERA) as client:
                    return await client.call_tool(tool, arguments)
        except ExceptionGroup as group:
            # The SDK's transport task group wraps connection errors; unwrap the ones that mean "unreachable".
            failure = group.subgroup(_TRANSPORT_ERRORS)
            if failure is None:
                raise
            first = failure.exceptions[0]
            raise _Failure(type(first).__name__) from group
        except _TRANSPORT_ERRORS as exc:
            raise _Failure(type(exc).__name__) from exc
