"""PostgreSQL, the system of record: pooled connections behind a breaker, migrations, the embedded server."""

from mcp_servers.shared.postgres.embedded import EmbeddedPostgres, embedded_postgres
from mcp_servers.shared.postgres.migrate import (
    MIGRATION_LOCK_KEY,
    Migration,
    apply_migrations,
    load_migrations,
    migrate,
)
from mcp_servers.shared.postgres.pool import (
    Connection,
    Database,
    IsolationLevel,
    PoolStats,
    database_dsn,
    open_database,
)

__all__ = [
    "MIGRATION_LOCK_KEY",
    "Connection",
    "Database",
    "EmbeddedPostgres",
    "IsolationLevel",
    "Migration",
    "PoolStats",
    "apply_migrations",
    "database_dsn",
    "embedded_postgres",
    "load_migrations",
    "migrate",
    "open_database",
]
