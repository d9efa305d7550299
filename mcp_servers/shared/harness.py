"""One way to declare and run a stack server on stdio, Streamable HTTP (both eras) and legacy SSE.

A server module builds `StackServer(core, instructions=..., open_deps=...)` and declares tools with
`server.tool(...)`. The harness adds, once for every server: the PostgreSQL pool and migrations, bearer auth
on HTTP, scopes, rate limits, error translation, metrics, request ids, and `/health`, `/ready`, `/metrics`.

Dependencies are opened once per process however many connections enter the MCP lifespan (legacy SSE enters
it per connection): the first entry opens them, the last exit closes them.
"""

import contextlib
import functools
import inspect
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio
import uvicorn
from mcp.server.auth.settings import AuthSettings as SdkAuthSettings
from mcp.server.extension import Extension
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resolve import find_resolved_parameters
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers import __version__
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.auth.scopes import Scope
from mcp_servers.shared.auth.verifier import StackTokenVerifier
from mcp_servers.shared.completions import Completer, Completions
from mcp_servers.shared.config import ServerName, StackSettings
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.middleware.http import AuthFailureCounter, SessionAdmission, allowed_hosts, bearer_protected
from mcp_servers.shared.middleware.mcp import (
    StackMiddleware,
    translate_errors,
    translate_prompt_errors,
    translate_resource_errors,
)
from mcp_servers.shared.observability.metrics import CONTENT_TYPE_LATEST, StackMetrics
from mcp_servers.shared.observability.tracing import configure_tracing
from mcp_servers.shared.postgres.pool import Database, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import RateLimiter, create_rate_limiter
from mcp_servers.shared.runtime_config import RuntimeConfig
from mcp_servers.shared.subscriptions import ResourceFanout, accept_log_level
from mcp_servers.shared.telemetry import RotationPolicy, TelemetryWriter

logger = logging.getLogger(__name__)

D = TypeVar("D")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ReadinessCheck = Callable[[], Awaitable[object]]
READINESS_TIMEOUT_SECONDS = 5.0
Endpoint = Callable[[Request], Awaitable[Response]]


def package_version() -> str:
    """The stack's version; pyproject reads the distribution's version from the same attribute."""
    return __version__


@dataclass(frozen=True, slots=True)
class Core:
    """Per-process building blocks every server shares; built without I/O."""

    server: ServerName
    settings: StackSettings
    metrics: StackMetrics
    breakers: BreakerRegistry
    limiter: RateLimiter
    telemetry: TelemetryWriter
    started_at: float
    runtime: RuntimeConfig
    """Live settings from PostgreSQL (`runtime.effective`), kept current while the server runs."""


def build_core(server: ServerName, settings: StackSettings) -> Core:
    """Metrics, breakers (exported as metrics), the rate limiter and the telemetry writer of one server."""
    metrics = StackMetrics(server, package_version())
    breakers = BreakerRegistry(settings.breaker, on_state_change=metrics.record_breaker)
    limiter = create_rate_limiter(settings.rate_limit, breakers)  # always built: the limit can be enabled live
    telemetry = TelemetryWriter(
        settings.telemetry_path,
        settings.telemetry.max_file_bytes,
        source=server,
        policy=RotationPolicy.from_settings(settings.telemetry),
    )
    configure_tracing(f"mcp-stack-{server}", settings.observability.otlp_endpoint)
    runtime = RuntimeConfig(settings, limiter)
    return Core(server, settings, metrics, breakers, limiter, telemetry, time.time(), runtime)


async def readiness_report(
    server: ServerName, checks: Mapping[str, ReadinessCheck], breakers: BreakerRegistry, started_at: float
) -> tuple[bool, dict[str, Any]]:
    """The `/ready` answer of every HTTP process of the stack: each check run at once with a timeout (a failure
    is reported, never raised), the breaker states, version and uptime; ready when there are checks and all pass."""
    results: dict[str, str] = {}

    async def run(name: str, check: ReadinessCheck) -> None:
        try:
            with anyio.fail_after(READINESS_TIMEOUT_SECONDS):
                await check()
            results[name] = "ok"
        except TimeoutError:
            results[name] = "timeout"
        except Exception as exc:  # a readiness probe reports every failure, it never raises
            results[name] = f"error: {type(exc).__name__}"

    async with anyio.create_task_group() as tg:
        for name, check in checks.items():
            tg.start_soon(run, name, check)
    ready = bool(checks) and all(value == "ok" for value in results.values())
    return ready, {
        "status": "ready" if ready else "not_ready",
        "server": server,
        "version": package_version(),
        "uptime_seconds": round(time.time() - started_at, 1),
        "checks": dict(sorted(results.items())),
        "breakers": breakers.snapshot(),
    }


class HasReadiness(Protocol):
    """Server dependencies name the checks `/ready` runs (PostgreSQL is added by the harness)."""

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]: ...


OpenDeps = Callable[[Core, Database], contextlib.AbstractAsyncContextManager[D]]


class _SharedDeps(Generic[D]):
    """Reference-counted lifespan: the first user opens the database and the server's deps, and closes them.

    The task that opened the dependencies is the one that closes them (so they may hold anyio task groups): when
    the opener leaves before the other users (legacy SSE connections), it waits for them before closing.
    """

    def __init__(self, core: Core, open_deps: OpenDeps[D]) -> None:
        self._core = core
        self._open_deps = open_deps
        self._lock = anyio.Lock()
        self._users = 0
        self._idle = anyio.Event()
        self._stack: contextlib.AsyncExitStack | None = None
        self.database: Database | None = None
        self.deps: D | None = None

    async def _open(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            self.database = await stack.enter_async_context(open_database(self._core.settings, self._core.breakers))
            await _start_runtime_config(stack, self._core, self.database)
            self.deps = await stack.enter_async_context(self._open_deps(self._core, self.database))
        except BaseException:
            await stack.aclose()
            self.database = self.deps = None
            raise
        self._stack = stack

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[D]:
        async with self._lock:
            opener = self._stack is None
            if opener:
                await self._open()
                self._idle = anyio.Event()
            self._users += 1
        try:
            assert self.deps is not None
            yield self.deps
        finally:
            self._users -= 1
            if self._users == 0:
                self._idle.set()
            if opener:
                await self._close_when_idle()

    async def _close_when_idle(self) -> None:
        try:
            while self._users > 0:
                idle = self._idle
                await idle.wait()
                if self._users > 0:  # someone joined after the last one left
                    self._idle = anyio.Event()
        finally:
            # Closing in the opener's task, not shielded: a shield scope would sit between this task and the
            # cancel scopes of task groups the dependencies entered. Shutdown cancels every user anyway.
            stack, self._stack = self._stack, None
            self.database = self.deps = None
            if stack is not None:
                await stack.aclose()


async def _start_runtime_config(stack: contextlib.AsyncExitStack, core: Core, database: Database) -> None:
    """Run the live-settings watcher in a task group that the stack cancels and exits when it closes."""
    # A pool of one connection cannot lend one to LISTEN for good: poll only.
    listen = core.settings.postgres.pool_max_size >= 2
    tg = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(tg.cancel_scope.cancel)
    tg.start_soon(functools.partial(core.runtime.run, database, core.breakers, listen=listen))


class StackServer(Generic[D]):
    """An MCPServer plus everything the stack applies to every server."""

    def __init__(
        self,
        core: Core,
        *,
        instructions: str,
        open_deps: OpenDeps[D],
        title: str | None = None,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.core = core
        self._shared = _SharedDeps(core, open_deps)
        self._tool_scopes: dict[str, Scope] = {}
        self._tool_parameters: dict[str, frozenset[str]] = {}
        self._extra_routes: list[BaseRoute] = []
        self._prompts: set[str] = set()
        self.completions = Completions()
        settings = core.settings
        self.base_url = f"http://{_url_host(settings.http.host)}:{self.port}"
        self.verifier = StackTokenVerifier(self._keys, settings.auth)
        auth = None
        if settings.auth.required:
            auth = SdkAuthSettings(
                issuer_url=settings.auth.jwt_issuer or self.base_url,
                resource_server_url=f"{self.base_url}/mcp",
                validate_token_resource=False,  # API keys carry no audience; the JWT verifier checks `aud` itself
            )
        self.mcp: MCPServer[D] = MCPServer(
            name=f"mcp-stack-{core.server}",
            title=title,
            version=package_version(),
            instructions=instructions,
            lifespan=self._lifespan,
            token_verifier=self.verifier if auth is not None else None,
            auth=auth,
            log_level=settings.observability.log_level,
            extensions=extensions,
            middleware=[
                StackMiddleware(
                    server=core.server,
                    metrics=core.metrics,
                    limiter=core.limiter,
                    tool_scopes=self._tool_scopes,
                    tool_parameters=self._tool_parameters,
                    prompt_names=self._prompt_names,
                )
            ],
        )
        # resources/subscribe (2025-11-25) and change notifications in both eras; servers publish through it.
        self.fanout = ResourceFanout(self.mcp)
        accept_log_level(self.mcp)
        # Every server answers completion/complete (an empty list where nothing completes); see `complete`.
        # MCPServer.completion is untyped in mcp 2.3.
        self.mcp.completion()(translate_prompt_errors(self.completions.handle))  # type: ignore[no-untyped-call]

    @property
    def port(self) -> int:
        return int(getattr(self.core.settings.http, f"{self.core.server}_port"))

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: MCPServer[D]) -> AsyncIterator[D]:
        async with self._shared.use() as deps:
            yield deps

    def _keys(self) -> KeyStore | None:
        return KeyStore(self._shared.database) if self._shared.database is not None else None

    def _prompt_names(self) -> frozenset[str]:
        # The names `prompt` registered: MCPServer lists its prompts publicly only through the async
        # `list_prompts()`, and the middleware asks synchronously.
        return frozenset(self._prompts)

    @property
    def declared_names(self) -> frozenset[str]:
        """The names of the tools and prompts registered so far."""
        return frozenset(self._tool_scopes) | frozenset(self._prompts)

    @property
    def database(self) -> Database:
        """The open database (only while the server runs)."""
        if self._shared.database is None:
            raise DependencyUnavailable("postgres", reason="server not started")
        return self._shared.database

    @property
    def deps(self) -> D:
        """The open dependencies (only while the server runs)."""
        if self._shared.deps is None:
            raise DependencyUnavailable(self.core.server, reason="server not started")
        return self._shared.deps

    def tool(
        self, name: str, *, annotations: ToolAnnotations, scope: Scope | None = None, title: str | None = None
    ) -> Callable[[F], F]:
        """Register a tool; its scope defaults to `read` for read-only tools and `write` otherwise."""
        required: Scope = scope or ("read" if annotations.read_only_hint else "write")

        def decorator(fn: F) -> F:
            self._tool_scopes[name] = required
            # The arguments a caller may pass: the signature without the injected Context and resolver-filled ones.
            injected = {find_context_parameter(fn), *find_resolved_parameters(fn)}
            self._tool_parameters[name] = frozenset(inspect.signature(fn).parameters) - injected
            # The docstring is the description the model reads: without its source indentation.
            description = inspect.cleandoc(fn.__doc__) if fn.__doc__ else None
            self.mcp.tool(name=name, title=title, description=description, annotations=annotations)(
                translate_errors(fn)
            )
            return fn

        return decorator

    def prompt(self, name: str, *, description: str) -> Callable[[F], F]:
        """Register a prompt; domain errors become JSON-RPC errors with their message."""

        def decorator(fn: F) -> F:
            self.mcp.prompt(name=name, description=description)(translate_prompt_errors(fn))
            self._prompts.add(name)
            return fn

        return decorator

    def complete(self, ref: str, argument: str) -> Callable[[Completer], Completer]:
        """Complete `argument` of the prompt or resource template `ref` with `fn(prefix, limit) -> values`."""

        def decorator(fn: Completer) -> Completer:
            self.completions.add(ref, argument, fn)
            return fn

        return decorator

    def resource(
        self, uri: str, *, name: str, description: str, mime_type: str = "application/json"
    ) -> Callable[[F], F]:
        """Register a resource or resource template; NotFound becomes ResourceNotFoundError."""

        def decorator(fn: F) -> F:
            self.mcp.resource(uri, name=name, description=description, mime_type=mime_type)(
                translate_resource_errors(fn)
            )
            return fn

        return decorator

    def route(
        self,
        path: str,
        endpoint: Callable[[Request], Awaitable[Response]],
        *,
        scope: Scope,
        methods: tuple[str, ...] = ("GET",),
    ) -> None:
        """Add a custom HTTP route to the app, behind bearer auth with `scope` when auth is required."""
        self._extra_routes.append(Route(path, self.protect(endpoint, scope), methods=list(methods)))

    def protect(
        self, endpoint: Callable[[Request], Awaitable[Response]], scope: Scope
    ) -> Callable[[Request], Awaitable[Response]]:
        """Bearer auth (when required) with `scope`, then the caller's rate limit, around an HTTP endpoint."""
        return bearer_protected(
            endpoint,
            verifier=self.verifier,
            base_url=self.base_url,
            server=self.core.server,
            scope=scope,
            limiter=self.core.limiter,
            require_auth=self.core.settings.auth.required,
        )

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Run every dependency check with a timeout; report breaker states too."""
        checks: dict[str, ReadinessCheck] = {}
        if self._shared.database is not None:
            checks["postgres"] = self._shared.database.ping
        deps = self._shared.deps
        if deps is not None and hasattr(deps, "readiness_checks"):
            checks.update(deps.readiness_checks())
        return await readiness_report(self.core.server, checks, self.core.breakers, self.core.started_at)

    def _routes(self) -> list[BaseRoute]:
        core = self.core

        async def health(_: Request) -> Response:
            return JSONResponse({"status": "ok", "server": core.server, "version": package_version()})

        async def ready(_: Request) -> Response:
            is_ready, body = await self.readiness()
            return JSONResponse(body, status_code=200 if is_ready else 503)

        async def metrics(_: Request) -> Response:
            database = self._shared.database
            if database is not None:
                stats = database.stats()
                core.metrics.db_pool_connections.labels("in_use").set(stats.in_use)
                core.metrics.db_pool_connections.labels("idle").set(stats.idle)
            return Response(core.metrics.render(), media_type=CONTENT_TYPE_LATEST)

        return [
            Route("/health", health, methods=["GET"]),
            Route("/ready", self.protect(ready, "read"), methods=["GET"]),
            Route("/metrics", self.protect(metrics, "read"), methods=["GET"]),
            *self._extra_routes,
        ]

    def http_app(self, *, stateless: bool = False) -> Starlette:
        """Streamable HTTP at /mcp (both eras), legacy SSE at /sse + /messages/, and the custom routes."""
        http = self.core.settings.http
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=allowed_hosts(http),
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        app = self.mcp.streamable_http_app(
            transport_security=security,
            stateless_http=stateless,
            max_request_body_size=http.max_request_bytes,
            max_sessions=http.max_sessions,
            host=http.host,
        )
        sse = self.mcp.sse_app(transport_security=security, max_request_body_size=http.max_request_bytes)
        # The SSE routes are already wrapped in RequireAuthMiddleware; the streamable app's authentication
        # middleware (same verifier) fills in the user for them.
        app.router.routes.extend(route for route in sse.routes if getattr(route, "path", "") in ("/sse", "/messages"))
        admission = SessionAdmission(
            server=self.core.server,
            limiter=self.core.limiter,
            max_per_principal=http.max_sessions_per_principal,
            streamable_owners=self._session_owners,
            on_refused=self.core.metrics.rate_limit_rejections.labels(self.core.server, "session/open").inc,
        )
        for route in app.router.routes:
            # Route.app is the endpoint (RequireAuthMiddleware around the transport); admission runs after the
            # app-wide authentication middleware has named the user.
            if isinstance(route, Route) and route.path == "/mcp" and not stateless:
                route.app = admission.streamable(route.app)
            elif isinstance(route, Route) and route.path == "/sse":
                route.app = admission.sse(route.app)
        app.router.routes.extend(self._routes())
        server = self.core.server
        failures = self.core.metrics.auth_failures
        # Outermost (add_middleware inserts first), so it sees the 401s of every layer below it.
        app.add_middleware(AuthFailureCounter, count=lambda reason: failures.labels(server, reason).inc())
        return app

    def _session_owners(self) -> Iterator[str]:
        # The SDK's session manager records who opened each session (to refuse other credentials) but offers no
        # public view of it (mcp 2.3); read the mapping, never change it. No upstream issue as of 2026-12; pinned by
        # tests/unit/shared/test_sdk_internals.py.
        for owner in self.mcp.session_manager._session_owners.values():
            yield owner["client_id"]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _QuietSignalServer(uvicorn.Server):
    """uvicorn without its own signal handling: it re-raises SIGTERM after shutdown, ending the process with -15."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_until_signal(config: uvicorn.Config) -> None:
    """Run uvicorn with `config` until SIGINT/SIGTERM, then shut down gracefully and return (the dashboard's too)."""
    http = _QuietSignalServer(config)

    async def stop_on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                http.should_exit = True
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal)
        await http.serve()
        tg.cancel_scope.cancel()


async def serve_http(server: StackServer[Any], *, host: str | None = None, port: int | None = None) -> None:
    """Serve the HTTP app with uvicorn until SIGINT/SIGTERM; returns after a graceful shutdown (exit status 0)."""
    settings = server.core.settings
    config = uvicorn.Config(
        server.http_app(),
        host=host or settings.http.host,
        port=server.port if port is None else port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
        # Forwarded headers only from the configured proxies, as on the dashboard (uvicorn would trust loopback).
        proxy_headers=bool(settings.http.trusted_proxies),
        forwarded_allow_ips=list(settings.http.trusted_proxies),
    )
    try:
        await serve_until_signal(config)
    finally:
        await server.core.limiter.aclose()


async def serve_stdio(server: StackServer[Any]) -> None:
    """Serve one parent process over stdin/stdout (trusted: no auth, stack-wide scopes)."""
    logger.info("serving stdio", extra={"server": server.core.server, "pid": os.getpid()})
    try:
        await server.mcp.run_stdio_async()
    finally:
        await server.core.limiter.aclose()
