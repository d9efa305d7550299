"""Schema migrations: ordered plain SQL files applied once at start-up under a PostgreSQL advisory lock.

Each `migrations/NNNN_name.sql` runs in its own transaction and is recorded in `schema_migrations` with its
SHA-256. An applied file whose checksum changed stops start-up with ConfigurationError. Processes starting
together queue on the advisory lock: the first applies, the others find nothing left to do. A file must not
contain statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE
before PostgreSQL 12).
"""

import hashlib
import itertools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

import asyncpg
from anyio import to_thread

from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable
from mcp_servers.shared.postgres._errors import CONNECTION_ERRORS, LOGIN_ERRORS

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY: Final = int.from_bytes(b"mcpsmigr", "big")
"""Key of the session advisory lock held while migrating; fixed so that every process of the stack agrees."""

MIGRATIONS_PACKAGE: Final = "mcp_servers.shared.postgres.migrations"

_FILE_NAME: Final = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE: Final = """
CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its number, name, SQL text and the SHA-256 of that text."""

    version: int
    name: str
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        """The file's stem, e.g. `0001_foundation`, for messages."""
        return f"{self.version:04d}_{self.name}"

    @classmethod
    def from_text(cls, file_name: str, text: str) -> "Migration":
        """Build a migration from a file name and its content; raises ConfigurationError for a bad name."""
        match = _FILE_NAME.fullmatch(file_name)
        if match is None:
            raise ConfigurationError(f"migration file {file_name!r} must be named NNNN_lowercase_name.sql")
        # Line endings are normalised so that a checkout with CRLF does not look like an edited migration.
        normalised = text.replace("\r\n", "\n")
        checksum = hashlib.sha256(normalised.encode("utf-8")).hexdigest()
        return cls(version=int(match["version"]), name=match["name"], sql=normalised, checksum=checksum)


def load_migrations(directory: Traversable | None = None) -> tuple[Migration, ...]:
    """Read the `.sql` files of `directory` (default: the packaged migrations), ordered by version.

    Blocking file I/O: call it from a worker thread. Raises ConfigurationError for a misnamed file or a
    version used twice.
    """
    root = directory if directory is not None else resources.files(MIGRATIONS_PACKAGE)
    migrations = [
        Migration.from_text(entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.is_file() and entry.name.endswith(".sql")
    ]
    migrations.sort(key=lambda migration: migration.version)
    for previous, current in itertools.pairwise(migrations):
        if previous.version == current.version:
            raise ConfigurationError(
                f"migrations {previous.label} and {current.label} share version {current.version:04d}"
            )
    return tuple(migrations)


async def apply_migrations(
    connection: "asyncpg.Connection[Any]",
    migrations: Sequence[Migration],
    *,
    lock_timeout_seconds: float = 300.0,
) -> tuple[Migration, ...]:
    """Apply the migrations not yet recorded, in version order, and return those applied.

    Args:
        connection: a dedicated connection without command timeout; the caller closes it.
        lock_timeout_seconds: how long to wait for another process's migrations.

    Raises:
        ConfigurationError: an applied file changed, or a migration failed (it is rolled back).
        DependencyUnavailable: the lock stayed busy for `lock_timeout_seconds`.
    """
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=lock_timeout_seconds)
    except TimeoutError:
        raise DependencyUnavailable(
            "postgres", retry_after_seconds=lock_timeout_seconds, reason="another process holds the migration lock"
        ) from None
    try:
        return await _apply_locked(connection, migrations)
    finally:
        if not connection.is_closed():
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _apply_locked(
    connection: "asyncpg.Connection[Any]", migrations: Sequence[Migration]
) -> tuple[Migration, ...]:
    # Checked rather than CREATE TABLE IF NOT EXISTS, which sends a NOTICE on every start.
    if await connection.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        await connection.execute(_CREATE_TABLE)
    rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    applied = {int(row["version"]): str(row["checksum"]) for row in rows}
    _check_applied(applied, migrations)
    done: list[Migration] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        try:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        except CONNECTION_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            logger.error(
                "migration failed", extra={"migration": migration.label, "sqlstate": exc.sqlstate, "error": str(exc)}
            )
            raise ConfigurationError(
                f"migration {migration.label} failed ({type(exc).__name__}, SQLSTATE {exc.sqlstate}); "
                "it was rolled back: fix it and restart"
            ) from exc
        logger.info("migration applied", extra={"migration": migration.label})
        done.append(migration)
    return tuple(done)


def _check_applied(applied: dict[int, str], migrations: Iterable[Migration]) -> None:
    known = {migration.version: migration for migration in migrations}
    for version, checksum in applied.items():
        migration = known.get(version)
        if migration is None:
            # A newer release migrated this database; an older one may still run (e.g. during a rollout).
            logger.warning("database has a migration this release does not know", extra={"version": version})
        elif migration.checksum != checksum:
            raise ConfigurationError(
                f"migration {migration.label} was edited after it was applied (checksum differs); "
                "restore the file and put the change in a new migration"
            )


async def migrate(
    dsn: str,
    migrations: Sequence[Migration] | None = None,
    *,
    connect_timeout_seconds: float = 10.0,
    lock_timeout_seconds: float = 300.0,
) -> tuple[Migration, ...]:
    """Bring the database at `dsn` up to date on a dedicated connection and return the migrations applied.

    Raises:
        ConfigurationError: see `apply_migrations`; also a DSN whose role or database is refused.
        DependencyUnavailable: PostgreSQL cannot be reached.
    """
    if migrations is None:
        migrations = await to_thread.run_sync(load_migrations)
    try:
        # No command timeout: a data migration may legitimately run for minutes.
        connection = await asyncpg.connect(
            dsn,
            timeout=connect_timeout_seconds,
            command_timeout=None,
            server_settings={"application_name": "mcp-stack-migrate"},
        )
    except LOGIN_ERRORS as exc:
        raise ConfigurationError(
            f"PostgreSQL refused the DSN ({type(exc).__name__}); check its role and database"
        ) from None
    except CONNECTION_ERRORS as exc:
        raise DependencyUnavailable("postgres", reason=f"cannot connect ({type(exc).__name__})") from exc
    try:
        return await apply_migrations(connection, migrations, lock_timeout_seconds=lock_timeout_seconds)
    except CONNECTION_ERRORS as exc:
        raise DependencyUnavailable(
            "postgres", reason=f"connection lost while migrating ({type(exc).__name__})"
        ) from exc
    finally:
        await connection.close()
