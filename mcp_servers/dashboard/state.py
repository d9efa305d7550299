"""What the dashboard's pages share: settings, templates, and the parts its lifespan opens (database, store,
authenticator, links to the servers, status sampler, Ralph's task changes).

`create_app` builds one `DashboardState` and keeps it on `app.state`; a handler reaches it with `state_of(request)`.
"""

import time
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from mcp_servers.dashboard.auth import Authenticator, Passwords
from mcp_servers.dashboard.live import TaskChanges
from mcp_servers.dashboard.sampler import Sampler
from mcp_servers.dashboard.servers import UserLink
from mcp_servers.dashboard.store import DashboardStore
from mcp_servers.shared.auth.verifier import StackTokenVerifier
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.peers import Peer
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import MemoryRateLimiter

__all__ = ["STATE_ATTRIBUTE", "DashboardState", "Running", "state_of"]

STATE_ATTRIBUTE: Final = "dashboard"


@dataclass(frozen=True, slots=True)
class Running:
    """The parts that exist while the app runs."""

    database: Database
    store: DashboardStore
    auth: Authenticator
    sampler: Sampler


@dataclass
class DashboardState:
    """Built without I/O by `create_app`; `database`, `store`, `auth`, `links` and `sampler` exist while it runs.

    `verifier` and `limiter` guard `/ready`, as the harness guards every server's; `user_limiter` holds each
    dashboard user's budget towards the servers (`link`).
    """

    settings: StackSettings
    templates: Jinja2Templates
    breakers: BreakerRegistry
    passwords: Passwords
    verifier: StackTokenVerifier
    limiter: MemoryRateLimiter
    user_limiter: MemoryRateLimiter
    started_at: float = field(default_factory=time.time)
    tasks: TaskChanges = field(default_factory=TaskChanges)
    database: Database | None = None
    store: DashboardStore | None = None
    auth: Authenticator | None = None
    links: dict[str, Peer] = field(default_factory=dict)
    sampler: Sampler | None = None

    def link(self, name: str, username: str) -> UserLink:
        """The server `name`, called on behalf of the dashboard user `username` (spending their budget)."""
        return UserLink(self.links[name], self.user_limiter, username)

    def running(self) -> Running:
        """The open parts; only called by handlers, which run after start-up."""
        assert self.database and self.store and self.auth and self.sampler, "dashboard not started"
        return Running(self.database, self.store, self.auth, self.sampler)


def state_of(request: Request) -> DashboardState:
    """The state of the dashboard app serving `request`."""
    state: DashboardState = getattr(request.app.state, STATE_ATTRIBUTE)
    return state
