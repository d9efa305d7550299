"""The one MCP client for calling another MCP server: Ralph -> Hybrid/AIDB, Hybrid -> AIDB/Ralph, the dashboard,
AIDB's tool discovery, and the stdio bridge (`relay_stdio`: a stdio entry point serving its client through the
running stack). Only this module imports `mcp.client` (import-linter and a unit test enforce it).

One `Peer` per link, opened once per lifespan by `open_peer`: its own HTTP client (built on a worker thread; it
carries the link's bearer key, explicit timeouts and limits) and its own breaker. Errors map one way:
a tool's isError -> `PeerToolError` (its text); JSON-RPC -32602 (the peer refused these arguments, e.g. a NUL in
a string) -> `PeerToolError` (its message); JSON-RPC -32002 -> `RateLimited` (the peer's retry_after_seconds);
any other JSON-RPC error -> `DependencyUnavailable`; transport failure, timeout or open breaker ->
`DependencyUnavailable`. The breaker counts only transport failures and timeouts: a refusal or a tool error is
an answer from a live peer, not an outage.
"""

import contextlib
import functools
import importlib
import json
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlparse

import anyio
import anyio.to_thread
import httpx2
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, RequestParamsMeta, TextContent, TextResourceContents
from pydantic import SecretStr, ValidationError

from mcp_servers.shared.concurrency import first_leaf
from mcp_servers.shared.errors import (
    ConfigurationError,
    DependencyUnavailable,
    InvalidRequest,
    PeerToolError,
    RateLimited,
)
from mcp_servers.shared.hosts import HostAllowList
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

__all__ = [
    "ERA",
    "HttpAnswer",
    "Peer",
    "PeerSpec",
    "ToolAnswer",
    "list_stdio_tools",
    "mcp_endpoint",
    "open_peer",
    "relay_stdio",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Stack servers are pinned to the stateless era: no handshake, no session to lose when a peer restarts.
ERA: Final = "2026-07-28"
# What a peer's tool says is relayed, not stored: enough to act on, bounded against a chatty or hostile peer.
MAX_TEXT_CHARS: Final = 500
# A refusal without a usable wait still makes the caller back off; a hostile one cannot park it for days.
_DEFAULT_RETRY_SECONDS: Final = 5.0
_MAX_RETRY_SECONDS: Final = 3600.0
# The SDK transports raise these (often inside their task group's ExceptionGroup) when a peer is unreachable.
_TRANSPORT_ERRORS: Final = (httpx2.HTTPError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)
# Checked first: the builtin TimeoutError is an OSError, and httpx2's timeouts are HTTPErrors.
_TIMEOUTS: Final = (TimeoutError, httpx2.TimeoutException)


class _TransportFailure(Exception):
    """A transport failure unwrapped from the SDK's exception groups; the only kind (with timeouts) the breaker
    counts."""


# What the peer's breaker counts as an outage.
_OUTAGES: Final = (_TransportFailure, TimeoutError)


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """How to reach one peer over Streamable HTTP. One spec per link, each with its own key and timeout.

    Args:
        name: the breaker's dependency name (and the name in error messages), e.g. "hybrid".
        url: the peer's MCP endpoint, used as given (see `mcp_endpoint` for stack servers' settings).
        api_key: this link's bearer key; a key per link lets each link hold only the scopes it needs.
        timeout_seconds: per call, unless the call passes its own; also the HTTP client's read timeout.
        mode: the protocol era: `ERA` for stack servers, "auto" for third-party servers (discovery).
        allowed_hosts: for a URL a caller supplied (not the operator): the hosts it may name; None = any.
    """

    name: str
    url: str
    api_key: SecretStr | None
    timeout_seconds: float
    mode: str = ERA
    max_connections: int = 16
    allowed_hosts: HostAllowList | None = None


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """A successful tool result: its structured content (if any) and its text."""

    structured: dict[str, Any] | None
    text: str

    def data(self) -> dict[str, Any]:
        """The structured content, else a JSON object in the text, else `{"text": text}`."""
        if self.structured is not None:
            return self.structured
        try:
            parsed = json.loads(self.text)
        except ValueError:
            return {"text": self.text}
        return parsed if isinstance(parsed, dict) else {"result": parsed}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """Status and JSON body (None when the body is not JSON) of a plain HTTP GET."""

    status: int
    body: Any
    text: str


def mcp_endpoint(url: str) -> str:
    """A stack server's MCP endpoint from a configured URL, with or without its `/mcp` path."""
    base = url.rstrip("/")
    return base if base.endswith("/mcp") else f"{base}/mcp"


def _admit(spec: PeerSpec) -> None:
    """Refuse a URL this process must not call, before anything connects.

    Raises:
        ConfigurationError: not an http(s) URL.
        InvalidRequest: the host is not on the spec's allow-list (a caller-supplied URL).
    """
    parsed = urlparse(spec.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(
            f"{spec.name}: the MCP URL must be http:// or https://, e.g. http://127.0.0.1:8802/mcp"
        )
    allowed = spec.allowed_hosts
    if allowed is not None:
        try:
            host = parsed.hostname
            parsed.port  # noqa: B018 - a malformed port raises here, not later in the transport
        except ValueError:
            host = None
        if not host or not allowed.admits(host):
            raise InvalidRequest(
                f"{spec.name}: host {host or parsed.netloc!r} is not allowed; an operator can add it to "
                f"{allowed.setting}"
            )


def _http_client(spec: PeerSpec) -> httpx2.AsyncClient:
    """Build the link's client; runs on a worker thread, with the other disk reads a first call would make."""
    # The SDK client imports jsonschema lazily on the first tool result it validates; that import lists
    # directories, so it happens here, off the event loop (once per process: later imports are a dict lookup).
    importlib.import_module("jsonschema")
    headers = {"Authorization": f"Bearer {spec.api_key.get_secret_value()}"} if spec.api_key is not None else {}
    return httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(spec.timeout_seconds, connect=min(5.0, spec.timeout_seconds)),
        limits=httpx2.Limits(
            max_connections=spec.max_connections, max_keepalive_connections=max(1, spec.max_connections // 4)
        ),
    )


def _text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def _retry_seconds(data: object) -> float:
    value = data.get("retry_after_seconds") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return _DEFAULT_RETRY_SECONDS
    return min(max(float(value), 0.0), _MAX_RETRY_SECONDS)


def _refusal(peer: str, what: str, error: MCPError) -> RateLimited | PeerToolError | DependencyUnavailable:
    """A JSON-RPC error from a live peer: its rate limit, arguments it refuses, or anything else it will not serve."""
    retry = _retry_seconds(error.error.data)
    if error.error.code == RATE_LIMITED:
        return RateLimited(retry_after_seconds=retry, limit_key=f"{peer}:{what}")
    if error.error.code == INVALID_PARAMS:
        # The caller's arguments, not the peer's health: retrying the same call cannot succeed.
        return PeerToolError(peer, what, error.error.message[:MAX_TEXT_CHARS])
    return DependencyUnavailable(peer, retry_after_seconds=retry, reason=f"{what} refused (code {error.error.code})")


@contextlib.contextmanager
def _mapped(peer: str, what: str) -> Iterator[None]:
    """The one translation of client-side failures into StackErrors (an open breaker's passes through)."""
    try:
        yield
    except _TransportFailure as exc:
        logger.info("peer unreachable", extra={"dependency": peer, "error_type": str(exc)})
        raise DependencyUnavailable(peer, reason=f"{what}: cannot connect ({exc})") from None
    except TimeoutError:
        raise DependencyUnavailable(peer, reason=f"{what} timed out") from None
    except MCPError as exc:
        raise _refusal(peer, what, exc) from None
    except ValidationError:
        # The peer answered something that is not MCP: up, but not usable.
        raise DependencyUnavailable(peer, reason=f"{what}: malformed answer") from None


async def _session(connect: Callable[[], Client], operation: Callable[[Client], Awaitable[T]], seconds: float) -> T:
    """Run one operation on a fresh client within `seconds`; transport failures become `_TransportFailure`."""
    try:
        with anyio.fail_after(seconds):
            async with connect() as client:
                return await operation(client)
    except _TIMEOUTS as exc:
        raise TimeoutError from exc
    except ExceptionGroup as group:
        # The SDK's (nested) task groups wrap what went wrong; unwrap what means "too slow", "unreachable" or
        # "refused".
        if group.subgroup(_TIMEOUTS) is not None:
            raise TimeoutError from group
        failure = group.subgroup(_TRANSPORT_ERRORS)
        if failure is not None:
            raise _TransportFailure(type(first_leaf(failure)).__name__) from group
        refused = group.subgroup(MCPError)
        if refused is not None:
            raise first_leaf(refused) from group
        raise
    except _TRANSPORT_ERRORS as exc:
        raise _TransportFailure(type(exc).__name__) from exc


async def _every_tool(client: Client, max_tools: int, meta: RequestParamsMeta | None) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor, meta=meta)
        tools.extend(tool.model_dump(by_alias=True, exclude_none=True) for tool in page.tools)
        cursor = page.next_cursor
        if not cursor or len(tools) >= max_tools:
            return tools[:max_tools]


def _meta(meta: dict[str, Any] | None) -> RequestParamsMeta | None:
    # `_meta` is an open mapping (W3C traceparent under SEP-414, progress tokens); the SDK types it as a TypedDict.
    return cast(RequestParamsMeta, dict(meta)) if meta is not None else None


class Peer:
    """One MCP server this process calls. Built by `open_peer`, which owns and closes its HTTP client."""

    def __init__(self, spec: PeerSpec, http: httpx2.AsyncClient, breaker: CircuitBreaker | None) -> None:
        self.name = spec.name
        self.url = spec.url
        # /health, /ready and /metrics live beside the MCP endpoint.
        self.base_url = spec.url.rstrip("/").removesuffix("/mcp")
        self.timeout_seconds = spec.timeout_seconds
        self.breaker = breaker
        self._mode = spec.mode
        self._http = http

    def _guard(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.breaker if self.breaker is not None else contextlib.nullcontext()

    def _connect(self) -> Client:
        return Client(streamable_http_client(self.url, http_client=self._http), mode=self._mode)

    async def _run(self, what: str, operation: Callable[[Client], Awaitable[T]], seconds: float) -> T:
        with _mapped(self.name, what):
            async with self._guard():
                return await _session(self._connect, operation, seconds)

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        timeout_seconds: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ToolAnswer:
        """Call one tool and return its answer.

        Args:
            timeout_seconds: this call's deadline; default the link's.
            meta: extra keys for the request's `_meta`. The SDK adds the current span's W3C `traceparent` and
                `tracestate` itself (SEP-414), so every peer call continues the caller's trace.

        Raises:
            PeerToolError: the tool ran and answered with an error (its text is the message), or the peer refused
                the arguments (JSON-RPC -32602).
            RateLimited: the peer's rate limit refused this link's key; retry after `retry_after_seconds`.
            DependencyUnavailable: unreachable, timed out, refused otherwise, or the breaker is open.
        """

        async def call(client: Client) -> CallToolResult:
            return await client.call_tool(tool, arguments, meta=_meta(meta))

        result = await self._run(tool, call, timeout_seconds or self.timeout_seconds)
        text = _text_of(result)
        if result.is_error:
            raise PeerToolError(self.name, tool, text[:MAX_TEXT_CHARS])
        structured = result.structured_content if isinstance(result.structured_content, dict) else None
        return ToolAnswer(structured, text)

    async def read_resource(self, uri: str, *, meta: dict[str, Any] | None = None) -> str:
        """The text of a resource. Raises as `call_tool` does (an unknown URI, -32602, is PeerToolError)."""

        async def read(client: Client) -> str:
            result = await client.read_resource(uri, meta=_meta(meta))
            return "".join(item.text for item in result.contents if isinstance(item, TextResourceContents))

        return await self._run(uri, read, self.timeout_seconds)

    async def list_tools(self, *, max_tools: int, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every tool the peer lists (all pages, at most `max_tools`), as plain dicts. Raises as `call_tool`."""
        return await self._run(
            "tools/list", functools.partial(_every_tool, max_tools=max_tools, meta=_meta(meta)), self.timeout_seconds
        )

    async def get(self, path: str) -> HttpAnswer:
        """GET a path beside the MCP endpoint; any HTTP status is an answer, only transport failures are outages.

        Raises:
            DependencyUnavailable: unreachable, timed out, or the breaker is open.
        """
        with _mapped(self.name, f"GET {path}"):
            async with self._guard():
                try:
                    with anyio.fail_after(self.timeout_seconds):
                        response = await self._http.get(f"{self.base_url}{path}")
                except _TIMEOUTS as exc:
                    raise TimeoutError from exc
                except _TRANSPORT_ERRORS as exc:
                    raise _TransportFailure(type(exc).__name__) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        return HttpAnswer(response.status_code, body, response.text)


@contextlib.asynccontextmanager
async def open_peer(spec: PeerSpec, breakers: BreakerRegistry | None) -> AsyncIterator[Peer]:
    """A peer for the block's lifetime: its HTTP client is built on a worker thread and closed on exit.

    Args:
        breakers: the process's registry (the breaker is named `spec.name`); None for a one-off call with no
            breaker (discovery registers arbitrary servers: a breaker per name would grow without bound).

    Raises:
        ConfigurationError: the URL is not one this process may call.
        InvalidRequest: a caller-supplied URL names a host outside `spec.allowed_hosts`.
    """
    _admit(spec)
    # Building a client loads CA certificates from disk: off the event loop.
    http = await anyio.to_thread.run_sync(_http_client, spec)
    breaker = breakers.get(spec.name, failure_types=_OUTAGES) if breakers is not None else None
    try:
        yield Peer(spec, http, breaker)
    finally:
        with anyio.CancelScope(shield=True):
            await http.aclose()


async def list_stdio_tools(
    argv: Sequence[str], *, name: str, timeout_seconds: float, max_tools: int
) -> list[dict[str, Any]]:
    """Every tool an operator-configured stdio server lists (it is started, listed, and stopped).

    Raises:
        DependencyUnavailable: the command cannot start, exits, times out, or refuses to list.
        RateLimited: the server refused with -32002.
    """

    def connect() -> Client:
        return Client(StdioServerParameters(command=argv[0], args=list(argv[1:])), mode="legacy")

    with _mapped(name, "tools/list"):
        return await _session(connect, functools.partial(_every_tool, max_tools=max_tools, meta=None), timeout_seconds)


_BRIDGE_READ_TIMEOUT_SECONDS: Final = 3600.0  # a tool call may stream progress for a long time (ingest_path)


async def _relay(source: AsyncIterable[T | Exception], send: Callable[[T], Awaitable[None]], failure: str) -> None:
    """`send` each message of `source` until it ends; an exception in the stream is logged as `failure`, skipped."""
    async for item in source:
        if isinstance(item, Exception):
            logger.warning(failure, extra={"error_type": type(item).__name__})
            continue
        await send(item)


async def relay_stdio(url: str, api_key: SecretStr) -> None:
    """Serve this process's stdio client through a running server's Streamable HTTP endpoint until stdin closes.

    Messages are relayed one by one, both ways, unchanged: the client's own handshake, era and requests reach the
    server, which authenticates the bridge by `api_key`. A message that cannot be parsed or delivered is logged
    (stderr is the client's log) and skipped; the SDK's HTTP transport answers a failed request with an error.
    """
    spec = PeerSpec("bridge", url, api_key, _BRIDGE_READ_TIMEOUT_SECONDS)
    _admit(spec)
    http = await anyio.to_thread.run_sync(_http_client, spec)
    try:
        async with (
            stdio_server() as (from_client, to_client),
            streamable_http_client(url, http_client=http, terminate_on_close=True) as (from_server, to_server),
            anyio.create_task_group() as tg,
        ):

            async def upstream() -> None:
                await _relay(from_client, to_server.send, "stdio bridge: unreadable client message")
                tg.cancel_scope.cancel()  # stdin closed: the client has gone

            tg.start_soon(upstream)
            tg.start_soon(_relay, from_server, to_client.send, "stdio bridge: server transport error")
    finally:
        with anyio.CancelScope(shield=True):
            await http.aclose()
