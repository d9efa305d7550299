"""HTTP-side concerns: bearer protection for custom routes, session admission, auth-failure counting, and
domain errors as HTTP responses.

`mcp.custom_route` routes are not behind the SDK's MCP auth, so `/ready`, `/metrics` and admin routes go
through `bearer_protected`; only `/health` and `/.well-known/*` stay open. `SessionAdmission` rate-limits and caps,
per principal, the opening of 2025-11-25 Streamable HTTP sessions and legacy SSE streams (429 + `Retry-After`).
`AuthFailureCounter` counts every refused credential once in `mcpstack_auth_failures_total`. `allowed_hosts` is
the one Host allow-list (the SDK enforces it on the MCP endpoints, `HostAllowList` on the dashboard): any other
Host is answered 421, which closes DNS rebinding.
"""

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import TokenVerifier
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from mcp_servers.shared.auth.failures import AuthFailureReason, auth_outcome, note_auth_failure
from mcp_servers.shared.auth.scopes import Scope, grants
from mcp_servers.shared.auth.verifier import key_rate
from mcp_servers.shared.config import HttpSettings
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
    retry_after_whole_seconds,
)
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from mcp_servers.shared.resilience.ratelimit import KeyRate, RateLimiter

Endpoint = Callable[[Request], Awaitable[Response]]

LOOPBACK_HOSTS: Final = ("127.0.0.1:*", "localhost:*", "[::1]:*")


def allowed_hosts(http: HttpSettings) -> list[str]:
    """The Host values every HTTP endpoint accepts: loopback on any port, plus `http.allowed_hosts`.

    A pattern is an exact Host or `name:*` (that name with any port), as the SDK's transport security reads it.
    """
    return [*LOOPBACK_HOSTS, *http.allowed_hosts]


def host_allowed(host: str | None, patterns: Sequence[str]) -> bool:
    """Whether a Host header matches one of `patterns` (the SDK's rule: exact, or `name:*` for any port)."""
    if not host:
        return False
    return host in patterns or any(pattern.endswith(":*") and host.startswith(pattern[:-1]) for pattern in patterns)


class HostAllowList:
    """Pure ASGI middleware: 421 Misdirected Request for a Host outside `allowed_hosts` (DNS rebinding)."""

    def __init__(self, app: ASGIApp, *, patterns: Sequence[str]) -> None:
        self._app = app
        self._patterns = tuple(patterns)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None)
            if not host_allowed(host, self._patterns):
                await Response("Invalid Host header", status_code=421)(scope, receive, send)
                return
        await self._app(scope, receive, send)


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
        rate: KeyRate | None = None
        if require_auth:
            values = request.headers.getlist("authorization")
            token = values[0][7:].strip() if len(values) == 1 and values[0].lower().startswith("bearer ") else ""
            if not token:
                note_auth_failure("invalid" if values else "missing")
            access = await verifier.verify_token(token) if token else None
            if access is None:
                return JSONResponse(
                    {"error": "invalid_token", "error_description": "Authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": _challenge(base_url, "invalid_token", "Authentication required")},
                )
            if not grants(access.scopes, server=server, required=scope):
                note_auth_failure("insufficient_scope")
                return JSONResponse(
                    {"error": "insufficient_scope", "error_description": f"Required scope: {scope}"},
                    status_code=403,
                    headers={"WWW-Authenticate": _challenge(base_url, "insufficient_scope", f"need {scope}")},
                )
            principal, rate = access.client_id, key_rate(access)
        try:
            await limiter.acquire(f"{server}:{principal}:http:{request.url.path}", rate)
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


class AuthFailureCounter:
    """Pure ASGI middleware (outermost, before authentication): counts each refused HTTP request once.

    A 401 is counted with the last reason noted while the request was authenticated ("missing" when none was,
    i.e. no credential reached the verifier); a 403 only when a scope check noted "insufficient_scope" (other 403s,
    such as an Origin refusal, are not authentication failures).
    """

    def __init__(self, app: ASGIApp, *, count: Callable[[AuthFailureReason], None]) -> None:
        self._app = app
        self._count = count

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        with auth_outcome() as outcome:

            async def observe(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    if status == 401:
                        reason = outcome.reason
                        self._count("missing" if reason in (None, "insufficient_scope") else reason)
                    elif status == 403 and outcome.reason == "insufficient_scope":
                        self._count("insufficient_scope")
                await send(message)

            await self._app(scope, receive, observe)


class SessionAdmission:
    """Per-principal admission of new MCP sessions: a rate limit on opening them and a cap on those open.

    Sessions are 2025-11-25 Streamable HTTP sessions (the SDK's session manager tracks them and their owner) and
    legacy SSE streams (counted here while the stream is open); stateless 2026-07-28 requests open none. Opening
    one costs the principal one call of the `session/open` rate-limit bucket; a principal that already holds
    `max_per_principal` sessions is refused until one ends. Both refusals are HTTP 429 with `Retry-After` and a
    JSON-RPC error body (-32002 with `retry_after_seconds`), before the SDK admits the session. Requests without
    an authenticated user pass untouched: with auth required the SDK answers them 401, and with auth disabled the
    one trusted principal is bounded by the global session cap alone.

    Args:
        streamable_owners: the client ids owning the open Streamable HTTP sessions, now.
    """

    # How long a client at its session cap is told to wait: sessions end by DELETE, at once, or at the idle
    # timeout, so no exact time exists; a minute keeps a looping client from hammering the endpoint.
    CAP_RETRY_AFTER_SECONDS = 60.0

    def __init__(
        self,
        *,
        server: str,
        limiter: RateLimiter,
        max_per_principal: int,
        streamable_owners: Callable[[], Iterable[str]],
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self._server = server
        self._limiter = limiter
        self._max = max_per_principal
        self._streamable_owners = streamable_owners
        self._on_refused = on_refused
        # Openings in flight and open SSE streams, per principal (a counted opening may also already appear among
        # the manager's sessions for a moment: the count errs on the side of refusing).
        self._held: dict[str, int] = {}

    def open_sessions(self, principal: str) -> int:
        """Sessions `principal` holds now (Streamable HTTP, SSE, and openings in flight)."""
        owned = sum(1 for owner in self._streamable_owners() if owner == principal)
        return owned + self._held.get(principal, 0)

    def streamable(self, app: ASGIApp) -> ASGIApp:
        """Guard a Streamable HTTP endpoint: only requests that would open a 2025-11-25 session are admitted here."""

        async def guarded(scope: AsgiScope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and _opens_session(scope):
                await self._admit(app, scope, receive, send)
            else:
                await app(scope, receive, send)

        return guarded

    def sse(self, app: ASGIApp) -> ASGIApp:
        """Guard the legacy SSE endpoint: every GET opens a session that lasts as long as its stream."""

        async def guarded(scope: AsgiScope, receive: Receive, send: Send) -> None:
            await self._admit(app, scope, receive, send)

        return guarded

    async def _admit(self, app: ASGIApp, scope: AsgiScope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if not isinstance(user, AuthenticatedUser):
            await app(scope, receive, send)
            return
        principal = user.access_token.client_id
        try:
            await self._limiter.acquire(f"{self._server}:{principal}:session/open", key_rate(user.access_token))
        except RateLimited as exc:
            await self._refuse(exc.retry_after_seconds, "too many sessions opened; slow down", scope, receive, send)
            return
        if self.open_sessions(principal) >= self._max:
            message = f"this key already holds {self._max} open sessions; close one (DELETE /mcp) or reuse it"
            await self._refuse(self.CAP_RETRY_AFTER_SECONDS, message, scope, receive, send)
            return
        self._held[principal] = self._held.get(principal, 0) + 1
        try:
            await app(scope, receive, send)
        finally:
            left = self._held[principal] - 1
            if left:
                self._held[principal] = left
            else:
                del self._held[principal]

    async def _refuse(self, retry_after: float, message: str, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if self._on_refused is not None:
            self._on_refused()
        body = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": RATE_LIMITED,
                "message": message,
                "data": {"retry_after_seconds": retry_after_milliseconds(retry_after)},
            },
        }
        headers = {"Retry-After": str(retry_after_whole_seconds(retry_after))}
        await JSONResponse(body, status_code=429, headers=headers)(scope, receive, send)


def _opens_session(scope: AsgiScope) -> bool:
    """Whether the SDK would open a stateful session for this request: no session id, a handshake-era version."""
    version: str | None = None
    for key, value in scope["headers"]:
        if key == b"mcp-session-id":
            return False
        if key == b"mcp-protocol-version":
            version = value.decode("latin-1")
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS
