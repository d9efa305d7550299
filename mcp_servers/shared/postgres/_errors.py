"""Which driver exceptions mean "PostgreSQL is unreachable", shared by the pool and the migration runner."""

from typing import Final

import asyncpg


class ConnectionLost(Exception):
    """The server closed a borrowed connection mid-block; asyncpg then detaches it and raises InterfaceError."""


CONNECTION_ERRORS: Final[tuple[type[BaseException], ...]] = (
    ConnectionLost,
    OSError,  # refused, reset, socket missing while the server restarts
    TimeoutError,  # connect, acquire and command timeouts (asyncio.TimeoutError is TimeoutError)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, incl. ConnectionDoesNotExistError mid-query
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,  # our session was terminated by a shutdown
    asyncpg.CrashShutdownError,
)
"""Failures of the dependency itself: they count for the "postgres" breaker and become DependencyUnavailable."""

LOGIN_ERRORS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.InvalidAuthorizationSpecificationError,  # SQLSTATE class 28: role or password
    asyncpg.InvalidCatalogNameError,  # 3D000: the DSN names a database that does not exist
)
"""Failures of the DSN: retrying cannot help, so start-up stops with ConfigurationError."""
