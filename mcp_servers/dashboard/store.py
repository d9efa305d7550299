"""The dashboard's SQL adapter: operator accounts, server-side sessions and service commands (migration 0005).

`service_commands` is the queue between the dashboard (which requests) and the `mcp-stack up` supervisor (which
carries out, `mcp_servers/ops/supervisor.py`); both go through `DashboardStore`, nobody else writes that table.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from mcp_servers.shared.errors import Conflict, NotFound
from mcp_servers.shared.postgres.pool import Database

Role = Literal["admin", "viewer"]

_MAX_BIGINT: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class User:
    """An operator account (the hash never leaves the store except for verification)."""

    username: str
    role: Role
    password_hash: str


@dataclass(frozen=True, slots=True)
class Session:
    """A live login: who, its CSRF token, when it ends."""

    username: str
    role: Role
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ServiceCommand:
    """A request to the `mcp-stack up` supervisor."""

    id: int
    server: str
    action: str
    requested_by: str
    requested_at: datetime
    done_at: datetime | None
    result: str | None


def session_digest(session_id: str) -> bytes:
    """What the table keeps of a session id (the cookie holds the id itself)."""
    return hashlib.sha256(session_id.encode()).digest()


class DashboardStore:
    """Users, sessions and service commands in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create_user(self, username: str, password_hash: str, role: Role) -> None:
        """Add an account; raises Conflict when the name is taken."""
        try:
            await self._database.execute(
                "INSERT INTO dashboard_users (username, password_hash, role) VALUES ($1, $2, $3)",
                username,
                password_hash,
                role,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"user {username!r} exists already") from None
        except asyncpg.CheckViolationError:
            raise Conflict("username must be 1-64 characters of letters, digits and _.@-") from None

    async def count_users(self) -> int:
        """How many accounts exist."""
        return int(await self._database.fetchval("SELECT count(*) FROM dashboard_users"))

    async def user(self, username: str) -> User | None:
        """An enabled account by name."""
        row = await self._database.fetchrow(
            "SELECT username, role, password_hash FROM dashboard_users WHERE username = $1 AND disabled_at IS NULL",
            username,
        )
        return None if row is None else User(row["username"], row["role"], row["password_hash"])

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace an account's hash (rehash after a parameter change)."""
        await self._database.execute(
            "UPDATE dashboard_users SET password_hash = $2 WHERE username = $1", username, password_hash
        )

    async def reset_password(self, username: str, password_hash: str) -> None:
        """Give an account a new password and end every session it has (the operator's reset).

        Raises:
            NotFound: no account has that name.
        """
        async with self._database.transaction() as conn:
            updated = await conn.execute(
                "UPDATE dashboard_users SET password_hash = $2 WHERE username = $1", username, password_hash
            )
            if updated == "UPDATE 0":
                raise NotFound(f"no dashboard user {username!r}; create it with `mcp-stack dashboard-user create`")
            await conn.execute(
                "UPDATE dashboard_sessions SET revoked_at = now() WHERE username = $1 AND revoked_at IS NULL",
                username,
            )

    async def create_session(self, session_id: str, username: str, csrf_token: str, max_age_seconds: int) -> None:
        """Store a new session that ends after `max_age_seconds`."""
        await self._database.execute(
            "INSERT INTO dashboard_sessions (id_hash, username, csrf_token, expires_at) "
            "VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            session_digest(session_id),
            username,
            csrf_token,
            float(max_age_seconds),
        )

    async def session(self, session_id: str) -> Session | None:
        """A session that is neither expired nor revoked, of an enabled account."""
        row = await self._database.fetchrow(
            "SELECT s.username, u.role, s.csrf_token, s.expires_at FROM dashboard_sessions s "
            "JOIN dashboard_users u USING (username) WHERE s.id_hash = $1 AND s.revoked_at IS NULL "
            "AND s.expires_at > now() AND u.disabled_at IS NULL",
            session_digest(session_id),
        )
        return None if row is None else Session(row["username"], row["role"], row["csrf_token"], row["expires_at"])

    async def revoke_session(self, session_id: str) -> None:
        """End a session now (logout); expired rows are purged on the way."""
        async with self._database.transaction() as conn:
            await conn.execute(
                "UPDATE dashboard_sessions SET revoked_at = now() WHERE id_hash = $1", session_digest(session_id)
            )
            await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now() - interval '1 day'")

    async def request_command(self, server: str, action: str, *, actor: str) -> int:
        """Queue a service command for the supervisor and audit it; returns its id."""
        async with self._database.transaction() as conn:
            command_id = int(
                await conn.fetchval(
                    "INSERT INTO service_commands (server, action, requested_by) VALUES ($1, $2, $3) RETURNING id",
                    server,
                    action,
                    actor,
                )
            )
            await conn.execute(
                "INSERT INTO audit_log (actor, action, target, new_value) VALUES ($1, $2, $3, $4)",
                actor,
                f"service.{action}",
                server,
                {"command_id": command_id},
            )
        return command_id

    async def commands(self, *, limit: int = 20) -> list[ServiceCommand]:
        """The newest service commands first."""
        rows = await self._database.fetch(
            "SELECT id, server, action, requested_by, requested_at, done_at, result FROM service_commands "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [ServiceCommand(**_record(row)) for row in rows]

    async def command(self, command_id: int) -> ServiceCommand:
        """One service command; raises NotFound (also for an id no bigint can hold)."""
        if not 1 <= command_id <= _MAX_BIGINT:
            raise NotFound(f"service command {command_id} not found")
        row = await self._database.fetchrow(
            "SELECT id, server, action, requested_by, requested_at, done_at, result FROM service_commands "
            "WHERE id = $1",
            command_id,
        )
        if row is None:
            raise NotFound(f"service command {command_id} not found")
        return ServiceCommand(**_record(row))

    async def next_pending_command(self) -> ServiceCommand | None:
        """The oldest command the supervisor has not carried out yet."""
        row = await self._database.fetchrow(
            "SELECT id, server, action, requested_by, requested_at, done_at, result FROM service_commands "
            "WHERE done_at IS NULL ORDER BY id LIMIT 1"
        )
        return None if row is None else ServiceCommand(**_record(row))

    async def finish_command(self, command_id: int, result: str) -> None:
        """Record that the supervisor carried out a command, and how it went."""
        await self._database.execute(
            "UPDATE service_commands SET done_at = now(), result = $2 WHERE id = $1", command_id, result
        )


def _record(row: Any) -> dict[str, Any]:  # an asyncpg Record: the driver boundary
    return dict(row)
