"""HTTP-side concerns: bearer protection for custom routes, and domain errors as HTTP responses.

`mcp.custom_route` routes are not behind the SDK's MCP auth, so `/ready`, `/metrics` and admin routes go
through `bearer_protected`; only `/health` and `/.well-known/*` stay open.
"""

from collections.abc import Awaitable, Callable
from typing import Protocol

from mcp.server.auth.provider import TokenVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_servers.shared.auth.scopes import Scope, grants
from mcp_servers.shared.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    StackError,
)

Endpoint = Callable[[Request], Awaitable[Response]]


class _ProtectedServer(Protocol):
    @property
    def verifier(self) -> TokenVerifier: ...

    @property
    def base_url(self) -> str: ...

    @property
    def core(self) -> "_HasServerName": ...


class _HasServerName(Protocol):
    @property
    def server(self) -> str: ...


def _challenge(base_url: str, error: str, description: str) -> str:
    return (
        f'Bearer error="{error}", error_description="{description}", '
        f'resource_metadata="{base_url}/.well-known/oauth-protected-resource/mcp"'
    )


def bearer_protected(endpoint: Endpoint, server: _ProtectedServer, scope: Scope) -> Endpoint:
    """Wrap a route so it needs `Authorization: Bearer <key>` with `scope` on this server."""

    async def protected(request: Request) -> Response:
        values = request.headers.getlist("authorization")
        token = values[0][7:].strip() if len(values) == 1 and values[0].lower().startswith("bearer ") else ""
        access = await server.verifier.verify_token(token) if token else None
        if access is None:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": _challenge(server.base_url, "invalid_token", "Authentication required")},
            )
        if not grants(access.scopes, server=server.core.server, required=scope):
            return JSONResponse(
                {"error": "insufficient_scope", "error_description": f"Required scope: {scope}"},
                status_code=403,
                headers={"WWW-Authenticate": _challenge(server.base_url, "insufficient_scope", f"need {scope}")},
            )
        return await endpoint(request)

    return protected


def error_response(error: StackError) -> JSONResponse:
    """The HTTP form of a domain error (404, 409, 400, 403, 429 + Retry-After, 503 + Retry-After)."""
    headers: dict[str, str] = {}
    status = 500
    if isinstance(error, NotFound):
        status = 404
    elif isinstance(error, Conflict):
        status = 409
    elif isinstance(error, InvalidRequest):
        status = 400
    elif isinstance(error, PermissionDenied):
        status = 403
    elif isinstance(error, RateLimited):
        status = 429
        headers["Retry-After"] = str(max(1, round(error.retry_after_seconds + 0.499)))
    elif isinstance(error, DependencyUnavailable):
        status = 503
        headers["Retry-After"] = str(max(1, round(error.retry_after_seconds + 0.499)))
    return JSONResponse({"error": type(error).__name__, "message": str(error)}, status_code=status, headers=headers)


async def stack_error_handler(_: Request, exc: Exception) -> Response:
    """Starlette exception handler: register for StackError on HTTP apps (the dashboard)."""
    assert isinstance(exc, StackError)
    return error_response(exc)
