"""The dashboard's outer layers, outside Starlette's error handling so that they hold for every response:
security headers (a CSP without inline script, no framing, no sniffing), forwarded headers believed only from
`http.trusted_proxies`, and the stack's one Host allow-list (421 otherwise)."""

from typing import Any, Final, cast

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mcp_servers.shared.config import HttpSettings
from mcp_servers.shared.middleware.http import HostAllowList, allowed_hosts

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS: Final = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def outer_layers(app: ASGIApp, http: HttpSettings) -> ASGIApp:
    """`app` (Starlette's whole stack, its ServerErrorMiddleware included) inside the dashboard's outer layers.

    Outermost the security headers, so that a 500, a 421 or Starlette's own 404 carries them too; then the
    forwarded headers (client address and scheme from X-Forwarded-For/-Proto, only when the peer is a trusted
    proxy; with none configured they are ignored); then the Host check.
    """
    inner: ASGIApp = HostAllowList(app, patterns=allowed_hosts(http))
    if http.trusted_proxies:
        inner = cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, inner), trusted_hosts=list(http.trusted_proxies)))
    return SecurityHeaders(inner)


class SecurityHeaders:
    """Pure ASGI middleware (streams such as SSE pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not is_static and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"  # pages carry CSRF tokens and live data
            await send(message)

        await self.app(scope, receive, send_with_headers)
