"""PostgreSQL for tests: one server per session, one migrated template per session, one fresh database per test.

`MCP_STACK_TEST_DSN` names a server to use (a role that may create databases, e.g. the machine's PostgreSQL 15 at
postgresql://postgres@127.0.0.1:5432/postgres); without it the embedded server starts in a temporary data dir.
These are plain async context managers; a conftest registers them as fixtures (scopes noted on each).
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import anyio
import asyncpg
from anyio import to_thread

from mcp_servers.shared.postgres import embedded_postgres, migrate
from mcp_servers.shared.postgres.embedded import cluster_dir

TEST_DSN_VARIABLE = "MCP_STACK_TEST_DSN"
_ADMIN_TIMEOUT_SECONDS = 30.0


def dsn_for_database(dsn: str, database: str) -> str:
    """The same server and role as `dsn`, connected to `database` (query such as `?host=` is kept)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin(server_dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(server_dsn, timeout=_ADMIN_TIMEOUT_SECONDS)
    try:
        for statement in statements:
            await connection.execute(statement, timeout=_ADMIN_TIMEOUT_SECONDS)
    finally:
        await connection.close()


async def _drop(server_dsn: str, name: str) -> None:
    with anyio.CancelScope(shield=True):
        await _admin(server_dsn, f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")


@asynccontextmanager
async def scratch_dir() -> AsyncIterator[Path]:
    """A temporary data dir for an embedded server, removed afterwards with its clusters (elsewhere as root)."""
    path = Path(await to_thread.run_sync(partial(tempfile.mkdtemp, prefix="mcpstack-pgtest-")))
    try:
        yield path
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(_remove_with_clusters, path)


def _remove_with_clusters(path: Path) -> None:
    # As root a cluster lives outside its data dir (cluster_dir); tests also use sub-dirs of `path` as data dirs.
    data_dirs = [path, *(child for child in path.glob("*") if child.is_dir())]
    data_dirs += [grandchild for child in data_dirs[1:] for grandchild in child.glob("*") if grandchild.is_dir()]
    for data_dir in data_dirs:
        if cluster_dir(data_dir) != data_dir / "postgres":
            shutil.rmtree(cluster_dir(data_dir), ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def postgres_server() -> AsyncIterator[str]:
    """Session scope: yield a DSN of the server, connected to its maintenance database."""
    dsn = os.environ.get(TEST_DSN_VARIABLE)
    if dsn:
        yield dsn
        return
    async with scratch_dir() as data_dir, embedded_postgres(data_dir) as embedded_dsn:
        # A throwaway cluster needs no durability; DROP DATABASE checkpoints, which fsync makes slow.
        await _admin(embedded_dsn, "ALTER SYSTEM SET fsync = off", "SELECT pg_reload_conf()")
        yield embedded_dsn


@asynccontextmanager
async def template_database(server_dsn: str) -> AsyncIterator[str]:
    """Session scope: create and migrate a database to copy per test; yield its name; drop it at the end."""
    name = f"test_template_{uuid.uuid4().hex}"
    await _admin(server_dsn, f"CREATE DATABASE {_identifier(name)}")
    try:
        await migrate(dsn_for_database(server_dsn, name))
        yield name
    finally:
        await _drop(server_dsn, name)


@asynccontextmanager
async def fresh_database(server_dsn: str, template: str | None) -> AsyncIterator[str]:
    """Function scope: yield the DSN of a new database copied from `template` (None: empty), dropped afterwards.

    Copying needs the template to have no sessions, so any left over (e.g. a migration's) are terminated first.
    """
    name = f"test_{uuid.uuid4().hex}"
    source = template or "template0"
    connection = await asyncpg.connect(server_dsn, timeout=_ADMIN_TIMEOUT_SECONDS)
    try:
        if template is not None:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                template,
            )
        await connection.execute(
            f"CREATE DATABASE {_identifier(name)} TEMPLATE {_identifier(source)}", timeout=_ADMIN_TIMEOUT_SECONDS
        )
    finally:
        await connection.close()
    try:
        yield dsn_for_database(server_dsn, name)
    finally:
        await _drop(server_dsn, name)
