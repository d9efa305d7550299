"""Domain errors raised by logic modules and adapters; mapped to MCP and HTTP in one place each.

    StackError
    ├── NotFound                 unknown id; the model can correct it       -> ToolError / 404
    ├── Conflict                 state forbids the change                    -> ToolError / 409
    ├── InvalidRequest           valid types, bad combination or value       -> ToolError / 400
    ├── PermissionDenied         the principal lacks the scope               -> MCPError -32001 / 403
    ├── DependencyUnavailable    a dependency is down or its breaker is open -> ToolError "retry in N s" / 503
    └── RateLimited              the principal's budget is spent             -> MCPError -32002 / 429

Logic modules raise these and import nothing from `mcp`; `shared.middleware.mcp` and
`shared.middleware.http` are the only translators.
"""

from __future__ import annotations


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
        super().__init__(f"{dependency} is unavailable{detail}; retry in {max(1, round(retry_after_seconds))} s")
        self.dependency = dependency
        self.retry_after_seconds = retry_after_seconds


class RateLimited(StackError):
    """Raised by the rate limiter when a principal's budget for a tool is spent."""

    def __init__(self, *, retry_after_seconds: float, limit_key: str) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_seconds:.2f} s")
        self.retry_after_seconds = retry_after_seconds
        self.limit_key = limit_key


class ConfigurationError(StackError):
    """Raised at start-up when settings or the environment cannot work (wrong dimension, missing binary)."""
