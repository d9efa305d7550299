"""Who may use the stack: API keys (`mcp-stack keys`), dashboard accounts (`mcp-stack dashboard-user`), and the
keys and first account that `mcp-stack up` creates for its own processes and its operator.

Every function opens the system of record for its own duration (the embedded server when no DSN is set).
"""

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from mcp_servers.dashboard.auth import Passwords
from mcp_servers.dashboard.store import DashboardStore, Role
from mcp_servers.shared.auth.keys import IssuedKey, KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.files import write_atomically
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import KeyRate

__all__ = [
    "CREDENTIALS_FILE",
    "MIN_PASSWORD_CHARS",
    "create_dashboard_user",
    "create_key",
    "credentials_path",
    "describe_rate",
    "ensure_admin_key",
    "ensure_dashboard_admin",
    "generate_password",
    "list_keys",
    "reissue_key",
    "reissue_keys",
    "reset_dashboard_password",
    "revoke_key",
    "revoke_keys_named",
    "save_initial_credentials",
]

MIN_PASSWORD_CHARS: Final = 8
_FIRST_ADMIN: Final = "admin"
CREDENTIALS_FILE: Final = "initial-credentials"


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


async def revoke_keys_named(settings: StackSettings, name: str) -> None:
    """Revoke every active key named `name` (the keys `up` issued for its own run, when it stops)."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        for key in await keys.list():
            if key.name == name and key.revoked_at is None:
                await keys.revoke(key.key_id)


async def ensure_dashboard_admin(settings: StackSettings) -> tuple[str, str] | None:
    """Create the first dashboard admin when there is no account; return (username, password) to print once."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        store = DashboardStore(database)
        if await store.count_users() > 0:
            return None
        password = generate_password()
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


async def reset_dashboard_password(settings: StackSettings, username: str, password: str) -> None:
    """Give an account a new password and end its sessions.

    Raises:
        ConfigurationError: the password is shorter than `MIN_PASSWORD_CHARS`.
        NotFound: no account has that name.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigurationError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        await DashboardStore(database).reset_password(username, await Passwords().hash(password))


def generate_password() -> str:
    """A random dashboard password (144 bits)."""
    return secrets.token_urlsafe(18)


def credentials_path(settings: StackSettings) -> Path:
    """Where `up` keeps the credentials it creates (mode 0600): `<data_dir>/initial-credentials`."""
    return settings.data_dir / CREDENTIALS_FILE


async def save_initial_credentials(settings: StackSettings, entries: dict[str, str]) -> Path:
    """Add the credentials `up` just created to the private credentials file (earlier entries are kept)."""
    path = credentials_path(settings)

    def write() -> None:
        try:
            previous = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            previous = "# Credentials created by mcp-stack up. Store them elsewhere, then delete this file.\n"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = [f"\n# created {stamp}", *(f"{key}={value}" for key, value in entries.items())]
        write_atomically(path, previous + "\n".join(lines) + "\n", mode=0o600)

    await anyio.to_thread.run_sync(write)
    return path
