"""The dashboard's Starlette app: built from settings, opened by its lifespan, served by uvicorn.

`create_app(settings)` builds without I/O; the lifespan opens PostgreSQL (users, sessions, live config, audit),
one link per stack server, the status sampler and the listener for Ralph's task changes, and closes them in
reverse order. The state they make up is `state.py`; the pages are `pages/`. The security headers, the trusted
proxies' forwarded headers and the Host allow-list wrap the whole app, Starlette's error handling included
(`security.outer_layers`).
"""

import contextlib
import logging
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from mcp_servers import __version__
from mcp_servers.dashboard import pages
from mcp_servers.dashboard.auth import Authenticator, Passwords
from mcp_servers.dashboard.sampler import Sampler
from mcp_servers.dashboard.security import outer_layers
from mcp_servers.dashboard.servers import open_links, user_budget
from mcp_servers.dashboard.state import STATE_ATTRIBUTE, DashboardState
from mcp_servers.dashboard.store import DashboardStore
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.auth.verifier import StackTokenVerifier
from mcp_servers.shared.config import HttpSettings, StackSettings
from mcp_servers.shared.errors import StackError
from mcp_servers.shared.harness import serve_until_signal
from mcp_servers.shared.middleware.http import stack_error_handler
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import MemoryRateLimiter

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
_LISTEN_MIN_POOL = 2


class DashboardApp(Starlette):
    """Starlette whose middleware stack sits inside the dashboard's outer layers (`security.outer_layers`)."""

    def __init__(self, *, http: HttpSettings, **options: Any) -> None:
        self._http = http
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return outer_layers(super().build_middleware_stack(), self._http)


def create_app(settings: StackSettings) -> Starlette:
    """The dashboard app; nothing is opened until its lifespan starts."""
    # Templates are read in the lifespan, off the event loop; rendering then touches no file.
    sources: dict[str, str] = {}
    environment = jinja2.Environment(loader=jinja2.DictLoader(sources), autoescape=True, auto_reload=False)
    state = DashboardState(
        settings=settings,
        templates=Jinja2Templates(env=environment),
        breakers=BreakerRegistry(settings.breaker),
        passwords=Passwords(),
        # /ready accepts the stack's API keys and limits each caller, as every server's /ready does.
        verifier=StackTokenVerifier(lambda: KeyStore(state.database) if state.database else None, settings.auth),
        limiter=MemoryRateLimiter(settings.rate_limit),
        user_limiter=MemoryRateLimiter(user_budget(settings)),
    )
    state.templates.env.globals["version"] = __version__

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sources.update(await anyio.to_thread.run_sync(_read_templates))
        async with contextlib.AsyncExitStack() as stack:
            state.database = await stack.enter_async_context(
                open_database(settings, state.breakers, application_name="mcp-stack-dashboard")
            )
            state.store = DashboardStore(state.database)
            state.auth = Authenticator(state.store, settings.dashboard, state.passwords)
            state.links = await stack.enter_async_context(open_links(settings, state.breakers))
            state.sampler = Sampler(
                state.links,
                state.breakers,
                interval=settings.dashboard.sample_seconds,
                history=settings.dashboard.history_samples,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(state.sampler.run)
                # Live task pages wake on Ralph's NOTIFY; a pool of one connection cannot lend one for good.
                if settings.postgres.pool_max_size >= _LISTEN_MIN_POOL:
                    tg.start_soon(state.tasks.run, state.database)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
            state.database = state.store = state.auth = state.sampler = None

    routes = [*pages.routes(), Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")]
    app = DashboardApp(
        http=settings.http, routes=routes, lifespan=lifespan, exception_handlers={StackError: stack_error_handler}
    )
    setattr(app.state, STATE_ATTRIBUTE, state)
    return app


def _read_templates() -> dict[str, str]:
    mimetypes.init()  # reads the system's type maps once; StaticFiles would otherwise do it on the event loop
    return {path.name: path.read_text(encoding="utf-8") for path in TEMPLATES_DIR.glob("*.html")}


async def serve(settings: StackSettings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the dashboard until SIGINT/SIGTERM; returns after a graceful shutdown."""
    config = uvicorn.Config(
        create_app(settings),
        host=host or settings.http.host,
        port=settings.http.dashboard_port if port is None else port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=3,
        server_header=False,
        # The app reads forwarded headers itself, from `http.trusted_proxies` only (uvicorn would trust loopback).
        proxy_headers=False,
    )
    await serve_until_signal(config)
