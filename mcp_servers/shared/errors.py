"""Domain errors raised by logic modules and adapters; mapped to MCP and HTTP in one place each.

    StackError
    ├── NotFound                 unknown id; the model can correct it       -> ToolError / 404
    ├── Conflict                 state forbids the change                    -> ToolError / 409
    ├── InvalidRequest           valid types, bad combination or value       -> ToolError / 400
    ├── PermissionDenied         the principal lacks the scope               -> MCPError -32001 / 403
    ├── DependencyUnavailable    a dependency is down or its breaker is open -> ToolError "retry in N s" / 503
    ├── RateLimited              the principal's budget is spent             -> MCPError -32002 / 429
    ├── PeerToolError            a peer's tool answered isError, or refused  -> ToolError / 400
    │                            the arguments (-32602); its text
    └── ConfigurationError       settings or environment cannot work         -> MCPError -32603 / 500

Logic modules raise these and import nothing from `mcp`; `shared.middleware.mcp` and
`shared.middleware.http` are the only translators. `retry_after_whole_seconds` is the one rounding of a wait
for people and for `Retry-After`; `retry_after_milliseconds` the one for machine-readable `retry_after_seconds`.
"""

from __future__ import annotations

import math


def retry_after_whole_seconds(seconds: float) -> int:
    """A wait in whole seconds, rounded up and at least 1: for `Retry-After` and "retry in N s" messages.

    Rounding down (or to nearest) would tell a client to come back before its budget or cool-down allows.
    """
    return max(1, math.ceil(seconds))


def retry_after_milliseconds(seconds: float) -> float:
    """A wait for machine-readable data (`retry_after_seconds`): rounded up to the millisecond, at least 0.001.

    A refusing limiter's wait can be a few microseconds (a fast key's emission interval); rounding it to the nearest
    millisecond would say 0.0, and a client that waits 0 s is refused again. Rounded up, waiting exactly this long
    is enough.
    """
    if not math.isfinite(seconds):
        return 1.0
    return max(0.001, math.ceil(seconds * 1000.0) / 1000.0)


class StackError(Exception):
    """Base of every error the stack raises on purpose; its message is safe to show a client."""


class NotFound(StackError):
    """Raised when a document, task, key or other instance does not exist."""


class Conflict(StackError):
    """Raised when the current state forbids the requested change (e.g. stopping a finished task)."""


class InvalidRequest(StackError):
    """Raised when arguments are well-typed but unacceptable together or for this deployment."""


class PermissionDenied(StackError):
    """Raised when the authenticated principal lacks the scope a tool or route needs."""

    def __init__(self, message: str, *, required_scope: str) -> None:
        super().__init__(message)
        self.required_scope = required_scope


class DependencyUnavailable(StackError):
    """Raised by adapters when a dependency fails or its breaker is open; the caller may retry later."""

    def __init__(self, dependency: str, *, retry_after_seconds: float = 1.0, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"{dependency} is unavailable{detail}; retry in {retry_after_whole_seconds(retry_after_seconds)} s"
        )
        self.dependency = dependency
        self.retry_after_seconds = retry_after_seconds


class RateLimited(StackError):
    """Raised by the rate limiter when a principal's budget for a tool is spent."""

    def __init__(self, *, retry_after_seconds: float, limit_key: str) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_whole_seconds(retry_after_seconds)} s")
        self.retry_after_seconds = retry_after_seconds
        self.limit_key = limit_key


class PeerToolError(StackError):
    """Raised by `shared.peers` when another MCP server's tool answers with isError, or the server refuses the
    call's arguments (JSON-RPC -32602); the message is its text.

    An answer, not an outage: the peer's breaker does not count it. A tool that relays it gives the model a
    ToolError with the peer's text; the dashboard answers 400 with it.
    """

    def __init__(self, peer: str, tool: str, text: str) -> None:
        super().__init__(f"{peer} {tool}: {text}")
        self.peer = peer
        self.tool = tool
        self.text = text


class ConfigurationError(StackError):
    """Raised when settings or the environment cannot work (wrong dimension, missing binary).

    Mostly at start-up; inside a request the model could not have avoided it, so the host sees a JSON-RPC
    internal error (-32603) and the operator reads the log.
    """
