"""MCP-side cross-cutting concerns, applied by the harness to every server.

- `StackMiddleware` (a `ServerMiddleware`): request ids, unknown tool/prompt -> JSON-RPC -32602, a scope check
  on every request method (`METHOD_SCOPES`; tools by their own scope; unlisted methods refused), rate limits per
  principal and method or tool at the key's own rate when it has one (-32002 with `retry_after_seconds`), call
  metrics.
- `translate_errors`: wraps each tool so domain `StackError`s become `ToolError` (the model reads them) or
  `MCPError` (the host sees them). This is the one place domain errors meet MCP.
"""

import functools
import itertools
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, ParamSpec, TypeVar

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult
from starlette.requests import Request

from mcp_servers.shared.auth.scopes import Scope, grants
from mcp_servers.shared.auth.verifier import key_rate
from mcp_servers.shared.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PeerToolError,
    PermissionDenied,
    RateLimited,
    StackError,
    retry_after_milliseconds,
)
from mcp_servers.shared.observability.logging import request_id_var
from mcp_servers.shared.observability.metrics import StackMetrics
from mcp_servers.shared.resilience.ratelimit import KeyRate, RateLimiter

logger = logging.getLogger(__name__)

# Our JSON-RPC error codes (the -32000..-32019 server range).
PERMISSION_DENIED = -32001
RATE_LIMITED = -32002
DEPENDENCY_UNAVAILABLE = -32003

# Callers on stdio or in-process share the parent's trust; HTTP callers are named by their key id.
TRUSTED_PRINCIPAL = "local"

# The scope each request method needs on the server, for HTTP principals (stdio and in-process are trusted).
# `tools/call` needs the called tool's own scope. Handshake methods need only an authenticated caller. A request
# method in neither table is refused (PERMISSION_DENIED), so a handler the SDK or a server adds later stays
# closed until it is given a rule here; notifications carry no reply and pass.
HANDSHAKE_METHODS: frozenset[str] = frozenset({"initialize", "ping", "server/discover"})
METHOD_SCOPES: Mapping[str, Scope] = {
    "tools/list": "read",
    "resources/list": "read",
    "resources/templates/list": "read",
    "resources/read": "read",
    "resources/subscribe": "read",
    "resources/unsubscribe": "read",
    "subscriptions/listen": "read",
    "prompts/list": "read",
    "prompts/get": "read",
    "completion/complete": "read",
    "logging/setLevel": "read",
    # The tasks extension (shared/mcp_tasks.py): reading a task is a read, answering or cancelling one a write; the
    # handler shows each caller only its own tasks. tasks/result and tasks/list are not served (removed in v2).
    "tasks/get": "read",
    "tasks/update": "write",
    "tasks/cancel": "write",
}
TOOL_CALL = "tools/call"
# Rate-limit bucket of request methods with no rule (they are refused or unknown): one bucket, so a caller cannot
# mint limiter keys by inventing method names.
_OTHER_METHODS = "other"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(slots=True)
class _CallOutcome:
    crashed: bool = False


_outcome_var: ContextVar[_CallOutcome | None] = ContextVar("tool_call_outcome", default=None)


def to_mcp_error(error: StackError) -> Exception:
    """The MCP form of a domain error: ToolError for what the model can fix or retry, MCPError for the host."""
    if isinstance(error, RateLimited):
        data = {"retry_after_seconds": retry_after_milliseconds(error.retry_after_seconds)}
        return MCPError(RATE_LIMITED, str(error), data)
    if isinstance(error, PermissionDenied):
        return MCPError(PERMISSION_DENIED, str(error), {"required_scope": error.required_scope})
    if isinstance(error, NotFound | Conflict | InvalidRequest | DependencyUnavailable | PeerToolError):
        # A PeerToolError is the peer's own text, relayed to the model as this tool's error.
        return ToolError(str(error))
    # ConfigurationError (and any StackError not classified above): the model cannot fix the deployment, so the
    # host sees a protocol error and the operator reads the log.
    return MCPError(INTERNAL_ERROR, str(error))


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _is_unstorable(text: str) -> bool:
    # ASCII text cannot hold a surrogate: the common case costs one C-level scan.
    return "\x00" in text or (not text.isascii() and _UNSTORABLE.search(text) is not None)


def _holds_unstorable_text(arguments: object) -> bool:
    """Whether any string (key or value) holds NUL or a lone surrogate; the fast check before naming the path."""
    if type(arguments) is dict:
        # Flat arguments (the common case) need no walk: an explicit loop, no allocations.
        for key, value in arguments.items():
            if (type(key) is str and _is_unstorable(key)) or (type(value) is str and _is_unstorable(value)):
                return True
            if type(value) is dict or type(value) is list:
                break
        else:
            return False
    stack = [arguments]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _is_unstorable(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
            stack.extend(key for key in value if isinstance(key, str))
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def _unstorable_text(arguments: object) -> str | None:
    """The path of the first string holding NUL or a lone surrogate (JSON allows both; PostgreSQL and UTF-8 not)."""
    stack: list[tuple[str, object]] = [("", arguments)]
    while stack:  # iterative: arguments may nest deeper than the recursion limit
        path, value = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return repr(path or "arguments")
        elif isinstance(value, dict):
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
            stack.extend((path or "arguments", key) for key in value if isinstance(key, str))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def translate_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Tool wrapper: StackError -> ToolError/MCPError; anything else is a crash, recorded then re-raised."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except StackError as exc:
            raise to_mcp_error(exc) from None
        except (ToolError, MCPError):
            raise
        except Exception:
            outcome = _outcome_var.get()
            if outcome is not None:
                outcome.crashed = True
            raise

    return wrapper


def to_protocol_error(error: StackError) -> MCPError:
    """The JSON-RPC form of a domain error, for requests with no tool-error channel (resources, prompts)."""
    mapped = to_mcp_error(error)
    if isinstance(mapped, MCPError):
        return mapped
    if isinstance(error, DependencyUnavailable):
        return MCPError(
            DEPENDENCY_UNAVAILABLE,
            str(error),
            {"retry_after_seconds": retry_after_milliseconds(error.retry_after_seconds)},
        )
    return MCPError(INVALID_PARAMS, str(error))


def translate_resource_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Resource wrapper: NotFound -> ResourceNotFoundError (-32602), other StackErrors -> their JSON-RPC form."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except StackError as exc:
            raise to_protocol_error(exc) from None

    return wrapper


def translate_prompt_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Prompt wrapper: StackErrors -> their JSON-RPC form (the host shows the message)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except StackError as exc:
            raise to_protocol_error(exc) from None

    return wrapper


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key id (HTTP) or the trusted local parent (stdio, in-process), with the key's own rate."""

    name: str
    scopes: tuple[str, ...] | None  # None = trusted, every scope
    rate: KeyRate | None = None  # None = the server's limit

    def holds(self, server: str, required: Scope) -> bool:
        """Whether this caller may use `server` at `required` itself: a tool that fetches from another server
        on the caller's behalf asks this before returning what it fetched."""
        return self.scopes is None or grants(self.scopes, server=server, required=required)


_TRUSTED = Principal(name=TRUSTED_PRINCIPAL, scopes=None)


def principal_of(ctx: ServerRequestContext[Any, Any]) -> Principal:
    """The caller of this request, from the HTTP auth middleware's user (absent on stdio/in-process)."""
    request = ctx.request
    if isinstance(request, Request) and "user" in request.scope:
        user = request.scope["user"]
        if isinstance(user, AuthenticatedUser):
            token = user.access_token
            return Principal(name=token.client_id, scopes=tuple(token.scopes), rate=key_rate(token))
        return Principal(name="anonymous", scopes=())
    return _TRUSTED


@dataclass(frozen=True, slots=True)
class _ToolMeters:
    """Pre-resolved metric children of one tool: `.labels()` costs more than the observation itself."""

    ok: Any
    tool_error: Any
    crash: Any
    protocol_error: Any
    rejected: Any
    duration: Any


class StackMiddleware:
    """The ServerMiddleware every stack server runs, outermost-first inside the SDK's own."""

    def __init__(
        self,
        *,
        server: str,
        metrics: StackMetrics,
        limiter: RateLimiter,
        tool_scopes: Mapping[str, Scope],
        tool_parameters: Mapping[str, frozenset[str]],
        prompt_names: Callable[[], frozenset[str]],
    ) -> None:
        self._server = server
        self._metrics = metrics
        self._limiter = limiter
        self._tool_scopes = tool_scopes
        self._tool_parameters = tool_parameters
        self._prompt_names = prompt_names
        self._meters: dict[str, _ToolMeters] = {}
        self._method_rejections: dict[str, Any] = {}
        # Request ids: a per-process random prefix and a counter (cheaper than a uuid per call, still unique).
        self._id_prefix = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)

    def _meters_for(self, tool: str) -> _ToolMeters:
        meters = self._meters.get(tool)
        if meters is None:
            calls = self._metrics.tool_calls
            meters = _ToolMeters(
                ok=calls.labels(self._server, tool, "ok"),
                tool_error=calls.labels(self._server, tool, "tool_error"),
                crash=calls.labels(self._server, tool, "crash"),
                protocol_error=calls.labels(self._server, tool, "protocol_error"),
                rejected=self._metrics.rate_limit_rejections.labels(self._server, tool),
                duration=self._metrics.tool_duration.labels(self._server, tool),
            )
            self._meters[tool] = meters
        return meters

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        token = request_id_var.set(f"{self._id_prefix}-{next(self._ids):x}")
        try:
            method = ctx.method
            if method.startswith("notifications/"):
                return await call_next(ctx)
            if method == TOOL_CALL:
                return await self._call_tool(ctx, call_next)
            principal = principal_of(ctx)
            required = METHOD_SCOPES.get(method)
            if principal.scopes is not None and method not in HANDSHAKE_METHODS:
                if required is None:
                    self._deny(f"method {method!r} is not available over HTTP on {self._server}", None)
                if not grants(principal.scopes, server=self._server, required=required):
                    self._deny(f"{method} needs the {required!r} scope on {self._server}", required)
            bucket = method if required is not None or method in HANDSHAKE_METHODS else _OTHER_METHODS
            try:
                await self._limiter.acquire(f"{self._server}:{principal.name}:{bucket}", principal.rate)
            except RateLimited as exc:
                self._rejections_for(bucket).inc()
                raise to_mcp_error(exc) from None
            if method == "prompts/get":
                name = (ctx.params or {}).get("name")
                if name not in self._prompt_names():
                    raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name!r}")
            return await call_next(ctx)
        finally:
            request_id_var.reset(token)

    def _deny(self, message: str, required: Scope | None) -> NoReturn:
        self._metrics.auth_failures.labels(self._server, "insufficient_scope").inc()
        # No scope opens a method without a rule: say so rather than name one that would not help.
        raise to_mcp_error(PermissionDenied(message, required_scope=required or "none"))

    def _rejections_for(self, bucket: str) -> Any:
        counter = self._method_rejections.get(bucket)
        if counter is None:
            counter = self._method_rejections[bucket] = self._metrics.rate_limit_rejections.labels(self._server, bucket)
        return counter

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        name = (ctx.params or {}).get("name")
        principal = principal_of(ctx)
        # A caller without even read on this server learns nothing, not even which tool names exist.
        if principal.scopes is not None and not grants(principal.scopes, server=self._server, required="read"):
            self._deny(f"{TOOL_CALL} needs at least the 'read' scope on {self._server}", "read")
        # The SDK answers an unknown tool with isError; the spec wants -32602 (python-sdk#3659).
        # Remove once the SDK raises it itself.
        required = self._tool_scopes.get(name) if isinstance(name, str) else None
        if required is None or not isinstance(name, str):
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name!r}")
        meters = self._meters_for(name)
        arguments = (ctx.params or {}).get("arguments")
        # The SDK drops an argument the tool does not declare; a caller who relies on it (a misspelt limit, a
        # removed parameter) must learn so instead of getting a different call.
        declared = self._tool_parameters.get(name)
        if isinstance(arguments, dict) and declared is not None and not declared.issuperset(arguments):
            meters.protocol_error.inc()
            extra = sorted(str(key)[:100] for key in arguments if key not in declared)
            raise MCPError(
                INVALID_PARAMS,
                f"tool {name} has no parameter {extra[0]!r}; its parameters: {', '.join(sorted(declared))}",
            )
        unstorable = _unstorable_text(arguments) if arguments and _holds_unstorable_text(arguments) else None
        if unstorable is not None:
            meters.protocol_error.inc()
            raise MCPError(
                INVALID_PARAMS,
                f"argument {unstorable} of {name} contains a NUL character or an unpaired surrogate, which no text "
                "can store: remove it (or send binary data base64-encoded)",
            )
        if principal.scopes is not None and not grants(principal.scopes, server=self._server, required=required):
            meters.protocol_error.inc()
            self._deny(f"tool {name} needs the {required!r} scope on {self._server}", required)
        try:
            await self._limiter.acquire(f"{self._server}:{principal.name}:{name}", principal.rate)
        except RateLimited as exc:
            meters.rejected.inc()
            meters.protocol_error.inc()
            raise to_mcp_error(exc) from None
        outcome = _CallOutcome()
        outcome_token = _outcome_var.set(outcome)
        started = time.perf_counter()
        counter = meters.protocol_error
        try:
            result = await call_next(ctx)
            if outcome.crashed:
                counter = meters.crash
            elif (isinstance(result, CallToolResult) and result.is_error) or (
                isinstance(result, dict) and result.get("isError") is True  # the SDK may hand back the result dict
            ):
                counter = meters.tool_error
            else:
                counter = meters.ok
            return result
        finally:
            _outcome_var.reset(outcome_token)
            meters.duration.observe(time.perf_counter() - started)
            counter.inc()
