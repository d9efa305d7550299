"""API keys: `mcps_<key id>_<secret>`; only SHA-256 of the secret is stored, compared in constant time.

Keys are random 256-bit secrets, so a fast hash is enough (no password stretching needed); the key id
in the token lets us fetch one row and still compare digests with `hmac.compare_digest`.
"""

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mcp_servers.shared.auth.scopes import parse_scope
from mcp_servers.shared.errors import InvalidRequest, NotFound
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.resilience.ratelimit import KeyRate

KEY_PREFIX = "mcps"
_ID_BYTES = 6
_SECRET_BYTES = 32
# Compared against when the key id is unknown, so both paths cost one digest comparison.
_DUMMY_DIGEST = hashlib.sha256(b"unknown key").digest()
# Issued tokens are 61 characters (`mcps_` + 12 hex + `_` + 43); anything much longer is not one of ours.
MAX_API_KEY_CHARS = 128
# What `_to_key` reads.
_COLUMNS = "id, name, scopes, created_at, revoked_at, last_used_at, calls_per_minute, burst"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key's public facts; the secret is never kept."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    # The key's own rate limit; None takes the server's (`rate_limit.calls_per_minute` / `rate_limit.burst`).
    calls_per_minute: float | None = None
    burst: int | None = None

    @property
    def rate(self) -> KeyRate | None:
        """The key's own rate, or None when it uses the server's limit."""
        if self.calls_per_minute is None and self.burst is None:
            return None
        return KeyRate(self.calls_per_minute, self.burst)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created key: `token` is shown once and cannot be recovered later."""

    key: ApiKey
    token: str


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None (also for tokens longer than any issued key)."""
    if len(token) > MAX_API_KEY_CHARS:
        return None
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class KeyStore:
    """API keys in PostgreSQL (table `api_keys`); the caller owns the Database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, name: str, scopes: Sequence[str], *, rate: KeyRate | None = None) -> IssuedKey:
        """A new key; `rate` gives it its own rate limit (build it with `KeyRate.checked`), None the server's.

        Raises:
            InvalidRequest: a bad name, scope or rate.
        """
        if rate is not None:
            rate = KeyRate.checked(rate.calls_per_minute, rate.burst)
        if not name or len(name) > 200:
            raise InvalidRequest("key name must be 1-200 characters")
        try:
            checked = tuple(parse_scope(scope) for scope in scopes)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if not checked:
            raise InvalidRequest("a key needs at least one scope (read, write or admin)")
        key_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES).replace("_", "-")
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                "INSERT INTO api_keys (id, name, key_hash, scopes, calls_per_minute, burst)"
                f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
                key_id,
                name,
                _digest(secret),
                list(checked),
                rate.calls_per_minute if rate is not None else None,
                rate.burst if rate is not None else None,
            )
        assert row is not None
        return IssuedKey(key=_to_key(row), token=f"{KEY_PREFIX}_{key_id}_{secret}")

    async def list(self) -> list[ApiKey]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        return [_to_key(row) for row in rows]

    async def revoke(self, key_id: str) -> None:
        async with self._db.connection() as conn:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
            )
        if status.endswith(" 0"):
            raise NotFound(f"no active key with id {key_id!r}; see `mcp-stack keys list`")

    async def verify(self, token: str) -> ApiKey | None:
        """The active key this token proves, or None (unknown, malformed, revoked or wrong secret)."""
        verdict = await self.check(token)
        return verdict if isinstance(verdict, ApiKey) else None

    async def check(self, token: str) -> ApiKey | Literal["invalid", "revoked"]:
        """The active key this token proves, or why not: "revoked", or "invalid" (unknown, malformed, wrong secret).

        The reason is for the operator's metrics only; a client is told the same 401 either way.
        """
        parts = split_token(token)
        if parts is None:
            return "invalid"
        key_id, secret = parts
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE id = $1",
                key_id,
            )
        stored = bytes(row["key_hash"]) if row is not None else _DUMMY_DIGEST
        matches = hmac.compare_digest(_digest(secret), stored)
        if row is None or not matches:
            return "invalid"
        if row["revoked_at"] is not None:
            return "revoked"
        return _to_key(row)


def _to_key(row: Any) -> ApiKey:  # an asyncpg Record: the driver boundary
    return ApiKey(
        key_id=row["id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        calls_per_minute=row["calls_per_minute"],
        burst=row["burst"],
    )
