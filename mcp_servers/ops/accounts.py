"""Who may use the stack: API keys (`mcp-stack keys`), dashboard accounts (`mcp-stack dashboard-user`), and the
keys and first account that `mcp-stack up` creates for its own processes and its operator.

Every function opens the system of record for its own duration (the embedded server when no DSN is set).
"""

import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from mcp_servers.dashboard.auth import Passwords
from mcp_servers.dashboard.store import DashboardStore, Role
from mcp_servers.shared.auth.keys import IssuedKey, KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import KeyRate

__all__ = [
    "MIN_PASSWORD_CHARS",
    "create_dashboard_user",
    "create_key",
    "describe_rate",
    "ensure_admin_key",
    "ensure_dashboard_admin",
    "list_keys",
    "reissue_key",
    "reissue_keys",
    "revoke_key",
]

MIN_PASSWORD_CHARS: Final = 8
_FIRST_ADMIN: Final = "admin"


async def create_key(
    settings: StackSettings,
    name: str,
    scopes: list[str],
    *,
    calls_per_minute: float | None = None,
    burst: int | None = None,
) -> IssuedKey:
    """A new API key; its token is returned once and only its digest is stored.

    `calls_per_minute`/`burst` give it its own rate limit (None: the server's `rate_limit`).

    Raises:
        InvalidRequest: a bad name or scope, or a rate outside the bounds of `RateLimitSettings`.
    """
    rate = KeyRate.checked(calls_per_minute, burst)
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return await KeyStore(database).create(name, scopes, rate=rate)


def describe_rate(rate: KeyRate | None) -> str:
    """A key's rate limit for people: `6000/min, burst 200`, or `server default`."""
    return "server default" if rate is None else rate.describe()


async def list_keys(settings: StackSettings) -> list[str]:
    """One line per key: id, state, scopes, rate limit, name (never a token)."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = await KeyStore(database).list()
    return [
        f"{key.key_id}  {'revoked' if key.revoked_at else 'active':<8} {','.join(key.scopes):<20} "
        f"{describe_rate(key.rate):<28} {key.name}"
        for key in keys
    ]


async def revoke_key(settings: StackSettings, key_id: str) -> None:
    """Revoke a key now; raises NotFound for an unknown id."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        await KeyStore(database).revoke(key_id)


async def ensure_admin_key(settings: StackSettings) -> str | None:
    """Create an admin key when none is active; return its token (shown once) or None."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        if any(key.revoked_at is None and "admin" in key.scopes for key in await keys.list()):
            return None
        return (await keys.create("admin (created by mcp-stack up)", ["admin"])).token


async def reissue_key(settings: StackSettings, name: str, scope: str) -> str:
    """A fresh key named `name` for calls between the stack's processes; earlier active ones of that name are
    revoked (each `up` hands its children new keys)."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        for key in await keys.list():
            if key.name == name and key.revoked_at is None:
                await keys.revoke(key.key_id)
        return (await keys.create(name, [scope])).token


async def reissue_keys(
    settings: StackSettings, keys: Mapping[str, Sequence[str]], *, retired: Iterable[str] = ()
) -> dict[str, str]:
    """Fresh keys, name -> scopes, for calls between the stack's processes (one database session for all);
    earlier active keys of those names, and of the `retired` names, are revoked. Returns name -> token."""
    revoke = set(keys) | set(retired)
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        store = KeyStore(database)
        for key in await store.list():
            if key.name in revoke and key.revoked_at is None:
                await store.revoke(key.key_id)
        return {name: (await store.create(name, list(scopes))).token for name, scopes in keys.items()}


async def ensure_dashboard_admin(settings: StackSettings) -> tuple[str, str] | None:
    """Create the first dashboard admin when there is no account; return (username, password) to print once."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        store = DashboardStore(database)
        if await store.count_users() > 0:
            return None
        password = secrets.token_urlsafe(18)
        await store.create_user(_FIRST_ADMIN, await Passwords().hash(password), "admin")
        return _FIRST_ADMIN, password


async def create_dashboard_user(settings: StackSettings, username: str, role: Role, password: str) -> None:
    """Add a dashboard account.

    Raises:
        ConfigurationError: the password is shorter than `MIN_PASSWORD_CHARS`.
        Conflict: the username is taken or malformed.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigurationError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        password_hash = await Passwords().hash(password)
        await DashboardStore(database).create_user(username, password_hash, role)
