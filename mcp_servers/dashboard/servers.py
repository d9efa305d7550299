"""The dashboard's links to the stack servers, through their public interfaces only (`shared.peers`).

HTTP: `/health`, `/ready`, `/metrics`, Hybrid's `/learning/stats`; MCP: tools and resources. One peer per server,
carrying the service API key, each behind its own breaker here.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.peers import Peer, PeerSpec, mcp_endpoint, open_peer
from mcp_servers.shared.resilience.breaker import BreakerRegistry

SERVER_NAMES: Final = ("aidb", "hybrid", "ralph")


def server_urls(settings: StackSettings) -> dict[str, str]:
    """Base URL of each server: the dashboard setting, else the host and port the stack serves it on."""
    urls = {}
    for name in SERVER_NAMES:
        configured: str | None = getattr(settings.dashboard, f"{name}_url")
        port = getattr(settings.http, f"{name}_port")
        host = settings.http.host if settings.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
        urls[name] = configured or f"http://{host}:{port}"
    return urls


@contextlib.asynccontextmanager
async def open_links(settings: StackSettings, breakers: BreakerRegistry) -> AsyncIterator[dict[str, Peer]]:
    """One peer per server for the block's lifetime."""
    dashboard = settings.dashboard
    async with contextlib.AsyncExitStack() as stack:
        links: dict[str, Peer] = {}
        for name, url in server_urls(settings).items():
            spec = PeerSpec(name, mcp_endpoint(url), dashboard.service_api_key, dashboard.request_timeout_seconds)
            links[name] = await stack.enter_async_context(open_peer(spec, breakers))
        yield links
