"""The process's asyncpg pool behind the "postgres" circuit breaker, and `open_database`, its composition root.

    async with open_database(settings, breakers) as db:       # embedded server if no DSN, then migrations
        async with db.transaction() as conn:
            await conn.execute("INSERT ...")

Connection failures (refused, reset, timeouts, shutdowns, too many clients) count for the breaker and reach
callers as DependencyUnavailable("postgres"); query errors (e.g. UniqueViolationError) pass through unchanged
for the adapter to translate. asyncpg replaces a broken connection on the next acquire, so the pool recovers by
itself once the server is back.
"""

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mcp_servers.shared.config import PostgresSettings, StackSettings
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.postgres._errors import CONNECTION_ERRORS, LOGIN_ERRORS, ConnectionLost
from mcp_servers.shared.postgres.embedded import embedded_postgres
from mcp_servers.shared.postgres.migrate import Migration, migrate
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

logger = logging.getLogger(__name__)

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"  # asyncpg classes are generic only in the stubs
"""What `Database.connection()` yields: use it like an `asyncpg.Connection`, never keep it past the block."""

IsolationLevel: TypeAlias = Literal["read_committed", "repeatable_read", "serializable"]

BREAKER_NAME: Final = "postgres"
_CLOSE_TIMEOUT_SECONDS: Final = 10.0
_STARTUP_RETRY_SECONDS: Final = 0.5
_RELEASE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    *CONNECTION_ERRORS,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connection counts for the `mcpstack_db_pool_connections` gauge."""

    in_use: int
    idle: int
    max_size: int


async def _init_connection(connection: "asyncpg.Connection[asyncpg.Record]") -> None:
    # json/jsonb arrive as Python objects and are sent from them, as every store expects.
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _unavailable(exc: BaseException) -> DependencyUnavailable:
    # The class name says refused/reset/timeout without leaking the socket path or SQL.
    reason = "connection lost" if isinstance(exc, ConnectionLost) else type(exc).__name__
    return DependencyUnavailable(BREAKER_NAME, reason=reason)


def _is_lost(connection: Connection) -> bool:
    """Whether a borrowed connection died under its borrower (then asyncpg detaches the proxy)."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        return True


class Database:
    """The asyncpg pool of one process, with every use routed through the "postgres" breaker.

    Lifecycle: built and closed by `open_database` (or `Database.open` + `close`); callers never close it.
    """

    def __init__(
        self, pool: "asyncpg.Pool[asyncpg.Record]", breaker: CircuitBreaker, settings: PostgresSettings
    ) -> None:
        self._pool = pool
        self._breaker = breaker
        self._acquire_timeout = settings.connect_timeout_seconds

    @classmethod
    async def open(
        cls,
        dsn: str,
        settings: PostgresSettings,
        breakers: BreakerRegistry,
        *,
        application_name: str = "mcp-stack",
    ) -> "Database":
        """Create the pool (its first `pool_min_size` connections are opened now).

        Raises:
            ConfigurationError: the server refuses the DSN's role or database.
            DependencyUnavailable: the server cannot be reached.
        """
        try:
            pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
                dsn,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                command_timeout=settings.command_timeout_seconds,
                timeout=settings.connect_timeout_seconds,
                init=_init_connection,
                server_settings={"application_name": application_name},
            )
        except LOGIN_ERRORS as exc:
            raise ConfigurationError(
                f"PostgreSQL refused the DSN ({type(exc).__name__}); check its role and database"
            ) from None
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc
        return cls(pool, breakers.get(BREAKER_NAME, failure_types=CONNECTION_ERRORS), settings)

    async def close(self) -> None:
        """Close the pool, waiting a bounded time for borrowed connections before terminating them."""
        with anyio.move_on_after(_CLOSE_TIMEOUT_SECONDS, shield=True) as scope:
            await self._pool.close()
        if scope.cancelled_caught:
            logger.warning("postgres pool did not close in time; terminating connections")
            self._pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Borrow a connection for the block, through the breaker.

        Raises:
            DependencyUnavailable: the breaker is open, or the server failed during the block (connection
                errors raised by the block's own queries are translated too). Waiting longer than
                `connect_timeout_seconds` for a free connection counts too: a pool that stays exhausted
                means the server is too slow to serve this process.
        """
        try:
            async with self._breaker, self._borrowed() as connection:
                try:
                    yield connection
                except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                    # Also raised for misuse (e.g. two queries at once on one connection): that stays a bug.
                    # InternalClientError ("cannot switch to state ...") comes from a connection the server is
                    # closing during a shutdown, handed out before asyncpg noticed.
                    if _is_lost(connection):
                        raise ConnectionLost from exc
                    raise
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc

    acquire = connection
    """Alias of `connection()` for code written against asyncpg's pool."""

    @asynccontextmanager
    async def _borrowed(self) -> AsyncIterator[Connection]:
        connection = await self._pool.acquire(timeout=self._acquire_timeout)
        try:
            yield connection
        finally:
            await self._release(connection)

    async def _release(self, connection: Connection) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._pool.release(connection)
        except _RELEASE_ERRORS as exc:
            # The block's work is done (a transaction inside it has committed); only the reset before reuse
            # failed, as it does on a connection the server is closing. asyncpg has already discarded it.
            logger.warning("postgres connection discarded on release", extra={"error_type": type(exc).__name__})

    @asynccontextmanager
    async def held_connection(self) -> AsyncIterator[Connection]:
        """Borrow a connection for a long-lived block (LISTEN, keep-alive loops).

        The breaker judges only the acquisition: a block that lives for hours must not hold a half-open probe
        slot (every other caller would be refused until it ends). A connection lost during the block counts as
        a failure and raises DependencyUnavailable, as in `connection()`.
        """
        self._breaker.before_call()
        try:
            connection = await self._pool.acquire(timeout=self._acquire_timeout)
        except CONNECTION_ERRORS as exc:
            self._breaker.record_failure(exc)
            raise _unavailable(exc) from exc
        except BaseException:
            self._breaker.release_probe()
            raise
        self._breaker.record_success()
        try:
            yield connection
        except CONNECTION_ERRORS as exc:
            self._breaker.record_failure(exc)
            raise _unavailable(exc) from exc
        except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            if _is_lost(connection):
                self._breaker.record_failure(exc)
                raise _unavailable(exc) from exc
            raise
        finally:
            await self._release(connection)

    @asynccontextmanager
    async def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AsyncIterator[Connection]:
        """Borrow a connection inside a transaction that commits when the block ends without an exception."""
        async with self.connection() as connection, connection.transaction(isolation=isolation, readonly=readonly):
            yield connection

    async def execute(self, query: str, *args: object) -> str:
        """Run one statement on a pooled connection; returns the status tag."""
        async with self.connection() as connection:
            return await connection.execute(query, *args)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Run a query and return all rows."""
        async with self.connection() as connection:
            return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        """Run a query and return its first row, or None."""
        async with self.connection() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: object) -> Any:
        """Run a query and return the first column of its first row."""
        async with self.connection() as connection:
            return await connection.fetchval(query, *args)

    async def ping(self) -> float:
        """Round-trip `SELECT 1` through the breaker; returns the latency in seconds (for /ready)."""
        began = time.monotonic()
        await self.fetchval("SELECT 1")
        return time.monotonic() - began

    def stats(self) -> PoolStats:
        """Connections borrowed and idle right now."""
        size = self._pool.get_size()
        idle = self._pool.get_idle_size()
        return PoolStats(in_use=size - idle, idle=idle, max_size=self._pool.get_max_size())


async def _wait_for_server(dsn: str, settings: PostgresSettings, deadline_seconds: float) -> None:
    """Wait for a server that is still starting (e.g. a container started beside us); bounded."""
    with anyio.move_on_after(deadline_seconds):
        while True:
            try:
                connection = await asyncpg.connect(dsn, timeout=settings.connect_timeout_seconds)
            except CONNECTION_ERRORS:
                await anyio.sleep(_STARTUP_RETRY_SECONDS)
                continue
            except LOGIN_ERRORS:
                return  # reported precisely by the next step
            await connection.close()
            return


@asynccontextmanager
async def database_dsn(settings: StackSettings) -> AsyncIterator[str]:
    """The DSN of the system of record for the block: the configured one, else the embedded server's.

    The embedded server in `<data_dir>/postgres` is started (or joined, when another process of the stack runs
    it) on entry and released on exit; a configured DSN is yielded as it is, without connecting.

    Raises:
        ConfigurationError: the embedded server cannot be initialised or started.
    """
    if settings.postgres.dsn is not None:
        yield settings.postgres.dsn.get_secret_value()
        return
    async with embedded_postgres(settings.data_dir) as dsn:
        yield dsn


@asynccontextmanager
async def open_database(
    settings: StackSettings,
    breakers: BreakerRegistry,
    *,
    application_name: str = "mcp-stack",
    migrations: tuple[Migration, ...] | None = None,
    startup_timeout_seconds: float = 30.0,
) -> AsyncIterator[Database]:
    """Open the system of record for the lifetime of the block.

    Uses `settings.postgres.dsn`, or else the embedded server in `<data_dir>/postgres`; applies the migrations
    (default: the packaged ones); yields a `Database`; closes the pool and stops the embedded server after.

    Raises:
        ConfigurationError: the DSN is refused, a migration failed or was edited, the embedded server failed.
        DependencyUnavailable: the server stayed unreachable for `startup_timeout_seconds`.
    """
    async with AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(database_dsn(settings))
        if settings.postgres.dsn is not None:
            await _wait_for_server(dsn, settings.postgres, startup_timeout_seconds)
        await migrate(dsn, migrations, connect_timeout_seconds=settings.postgres.connect_timeout_seconds)
        database = await Database.open(dsn, settings.postgres, breakers, application_name=application_name)
        stack.push_async_callback(database.close)
        yield database
