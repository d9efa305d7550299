"""HTTP-side concerns: bearer protection for custom routes, and domain errors as HTTP responses.

`mcp.custom_route` routes are not behind the SDK's MCP auth, so `/ready`, `/metrics` and admin routes go
through `bearer_protected`; only `/health` and `/.well-known/*` stay open.
"""

from collections.abc import Awaitable, Callable

from mcp.server.auth.provider import TokenVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_servers.shared.auth.scopes import Scope, grants
from mcp_servers.shared.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PeerToolError,
    PermissionDenied,
    RateLimited,
    StackError,
    retry_after_whole_seconds,
)
from mcp_servers.shared.resilience.ratelimit import RateLimiter

Endpoint = Callable[[Request], Awaitable[Response]]


def _challenge(base_url: str, error: str, description: str) -> str:
    return (
        f'Bearer error="{error}", error_description="{description}", '
        f'resource_metadata="{base_url}/.well-known/oauth-protected-resource/mcp"'
    )


def bearer_protected(
    endpoint: Endpoint,
    *,
    verifier: TokenVerifier,
    base_url: str,
    server: str,
    scope: Scope,
    limiter: RateLimiter,
    require_auth: bool = True,
) -> Endpoint:
    """Wrap a route: `Authorization: Bearer <key>` with `scope` on `server`, then the caller's rate limit.

    401 with `WWW-Authenticate` for a missing, malformed, repeated or unknown credential; 403 for a missing
    scope; 429 with `Retry-After` when the principal's budget for this route is spent.
    """

    async def protected(request: Request) -> Response:
        principal = "anonymous"
        if require_auth:
            values = request.headers.getlist("authorization")
            token = values[0][7:].strip() if len(values) == 1 and values[0].lower().startswith("bearer ") else ""
            access = await verifier.verify_token(token) if token else None
            if access is None:
                return JSONResponse(
                    {"error": "invalid_token", "error_description": "Authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": _challenge(base_url, "invalid_token", "Authentication required")},
                )
            if not grants(access.scopes, server=server, required=scope):
                return JSONResponse(
                    {"error": "insufficient_scope", "error_description": f"Required scope: {scope}"},
                    status_code=403,
                    headers={"WWW-Authenticate": _challenge(base_url, "insufficient_scope", f"need {scope}")},
                )
            principal = access.client_id
        try:
            await limiter.acquire(f"{server}:{principal}:http:{request.url.path}")
        except RateLimited as exc:
            return error_response(exc)
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
    elif isinstance(error, InvalidRequest | PeerToolError):
        # A peer's tool refused what this request asked of it (its text says why): the client's to change.
        status = 400
    elif isinstance(error, PermissionDenied):
        status = 403
    elif isinstance(error, RateLimited):
        status = 429
        headers["Retry-After"] = str(retry_after_whole_seconds(error.retry_after_seconds))
    elif isinstance(error, DependencyUnavailable):
        status = 503
        headers["Retry-After"] = str(retry_after_whole_seconds(error.retry_after_seconds))
    return JSONResponse({"error": type(error).__name__, "message": str(error)}, status_code=status, headers=headers)


async def stack_error_handler(_: Request, exc: Exception) -> Response:
    """Starlette exception handler: register for StackError on HTTP apps (the dashboard)."""
    assert isinstance(exc, StackError)
    return error_response(exc)
