"""The dashboard's links to the stack servers, through their public interfaces only (`shared.peers`).

HTTP: `/health`, `/ready`, `/metrics`, Hybrid's `/learning/stats`; MCP: tools and resources. One peer per server,
carrying the service API key, each behind its own breaker here.

Pages reach a server through a `UserLink`: every call first spends one unit of the signed-in user's own budget
(`user_budget`), so one viewer's page loads cannot spend the service key's budget at the servers for everyone.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from mcp_servers.shared.config import RateLimitSettings, StackSettings
from mcp_servers.shared.peers import HttpAnswer, Peer, PeerSpec, ToolAnswer, mcp_endpoint, open_peer
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import RateLimiter

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


def user_budget(settings: StackSettings) -> RateLimitSettings:
    """Each dashboard user's budget towards the servers: the configured one, capped at half the service key's.

    The servers limit the service key per tool at `rate_limit`; a user's budget counts every call to any
    server, so with at most half of the key's per-tool budget one user alone can never spend it.
    """
    dashboard, key = settings.dashboard, settings.rate_limit
    return RateLimitSettings(
        enabled=True,
        calls_per_minute=min(dashboard.user_calls_per_minute, key.calls_per_minute / 2),
        burst=max(1, min(dashboard.user_burst, key.burst // 2)),
    )


@dataclass(frozen=True, slots=True)
class UserLink:
    """One dashboard user's use of one server: each call spends one unit of the user's budget, then goes out.

    Raises what `Peer` raises, and RateLimited (before any call) when the user's budget is spent.
    """

    peer: Peer
    limiter: RateLimiter
    username: str

    async def _spend(self) -> None:
        await self.limiter.acquire(f"user:{self.username}")

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> ToolAnswer:
        await self._spend()
        return await self.peer.call_tool(tool, arguments)

    async def read_resource(self, uri: str) -> str:
        await self._spend()
        return await self.peer.read_resource(uri)

    async def get(self, path: str) -> HttpAnswer:
        await self._spend()
        return await self.peer.get(path)
