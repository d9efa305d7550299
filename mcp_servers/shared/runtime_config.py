"""Live configuration: settings an operator may change while the servers run, kept in PostgreSQL `runtime_config`.

Writers (the dashboard) call `RuntimeConfigStore.set`, which validates the value with the same typed settings
models the servers load, writes it with an `audit_log` row and sends `NOTIFY mcp_stack_runtime_config`. Every
server process runs `RuntimeConfig.run` (started by the harness): it LISTENs on that channel and also re-reads the
table every `poll_seconds` (a missed notification or a dropped listener costs at most one poll), then applies the
known keys: the rate limiter's `update()`, the root log level, and `effective` settings that servers read (e.g.
Hybrid's `checkpoint_every_events`, AIDB's ingest roots, Ralph's command templates; Hybrid rebuilds its LLM
backends when `wait_changed` reports a new version). Structured keys (lists, mappings) are stored as JSON.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import anyio
import asyncpg
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.observability.logging import NOTABLE
from mcp_servers.shared.postgres.pool import BREAKER_NAME as POSTGRES_BREAKER
from mcp_servers.shared.postgres.pool import Connection, Database
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState
from mcp_servers.shared.resilience.ratelimit import RateLimiter

__all__ = [
    "CHANNEL",
    "RUNTIME_KEYS",
    "AuditEntry",
    "RuntimeConfig",
    "RuntimeConfigStore",
    "RuntimeKey",
    "apply_overrides",
    "valid_overrides",
]

logger = logging.getLogger(__name__)

CHANNEL: Final = "mcp_stack_runtime_config"
DEFAULT_POLL_SECONDS: Final = 5.0


@dataclass(frozen=True, slots=True)
class RuntimeKey:
    """One live-editable setting: `section.field` of StackSettings."""

    key: str
    label: str
    description: str
    structured: bool = False
    """A list or mapping: stored as JSON, edited as JSON text on the dashboard."""

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def field(self) -> str:
        return self.key.split(".", 1)[1]


RUNTIME_KEYS: Final[dict[str, RuntimeKey]] = {
    item.key: item
    for item in (
        RuntimeKey("rate_limit.enabled", "Rate limit enabled", "turn per-principal rate limiting on or off"),
        RuntimeKey("rate_limit.calls_per_minute", "Rate limit: calls per minute", "refill rate of each budget"),
        RuntimeKey("rate_limit.burst", "Rate limit: burst", "calls a principal may make at once per tool"),
        RuntimeKey(
            "hybrid.checkpoint_every_events", "Hybrid checkpoint interval (events)", "events per pipeline batch"
        ),
        RuntimeKey(
            "hybrid.backpressure_bytes", "Hybrid backpressure threshold (bytes)", "backlog that sheds low-value work"
        ),
        RuntimeKey("observability.log_level", "Log level", "DEBUG, INFO, WARNING or ERROR"),
        RuntimeKey(
            "aidb.allowed_roots",
            "Ingest roots",
            'directories ingest_path may read, a JSON list: ["/home/me/notes"]',
            structured=True,
        ),
        RuntimeKey(
            "hybrid.backends",
            "LLM backends",
            'JSON list: [{"name": "local", "kind": "local", "base_url": "http://127.0.0.1:8080/v1", "model": "m"}]; '
            "API keys by api_key_path (live settings are stored and audited in PostgreSQL)",
            structured=True,
        ),
        RuntimeKey(
            "ralph.command_templates",
            "Agent command templates",
            'JSON object, agent name -> argv: {"default": ["claude", "-p", "{prompt}"]}',
            structured=True,
        ),
    )
}


def apply_overrides(settings: StackSettings, overrides: Mapping[str, Any]) -> StackSettings:
    """`settings` with `overrides` (runtime keys) applied, validated by each section's model.

    Raises:
        InvalidRequest: an unknown key, or a value the settings model rejects (the message names the key).
    """
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        known = RUNTIME_KEYS.get(key)
        if known is None:
            raise InvalidRequest(f"{key}: not a live setting; choose one of {', '.join(RUNTIME_KEYS)}")
        by_section.setdefault(known.section, {})[known.field] = value
    update: dict[str, BaseModel] = {}
    for section, fields in by_section.items():
        current: BaseModel = getattr(settings, section)
        try:
            update[section] = type(current).model_validate({**dict(current), **fields})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or next(iter(fields))
            raise InvalidRequest(f"{section}.{field}: {first['msg']}") from None
        for field in fields:
            if _holds_secret(getattr(update[section], field)):
                raise InvalidRequest(
                    f"{section}.{field}: a live setting may not carry a secret (it is stored and audited in "
                    "PostgreSQL); put the key in a file and name it (api_key_path)"
                )
    return settings.model_copy(update=update)


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SecretStr):
        return True
    if isinstance(value, BaseModel):
        return any(_holds_secret(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, list | tuple):
        return any(_holds_secret(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_secret(item) for item in value.values())
    return False


def valid_overrides(settings: StackSettings, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored overrides that are runtime keys and valid one by one (others are skipped)."""
    valid: dict[str, Any] = {}
    for key, value in stored.items():
        if key in RUNTIME_KEYS:
            try:
                apply_overrides(settings, {key: value})
            except InvalidRequest:
                continue
            valid[key] = value
    return valid


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of `audit_log`."""

    id: int
    at: datetime
    actor: str | None
    action: str | None
    target: str | None
    old_value: Any
    new_value: Any


class RuntimeConfigStore:
    """Reads and writes `runtime_config` (with its audit trail) through the process's Database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def load(self) -> dict[str, Any]:
        """Every stored override, key -> JSON value."""
        rows = await self._database.fetch("SELECT key, value FROM runtime_config")
        return {row["key"]: row["value"] for row in rows}

    async def set(self, settings: StackSettings, key: str, value: Any, *, actor: str) -> tuple[Any, Any]:
        """Validate and store one override, audit it and notify every server; returns (old, new).

        `old` is the value in force before (the stored override, else the configured setting).

        Raises:
            InvalidRequest: unknown key or invalid value.
        """
        async with self._database.transaction() as conn:
            # One writer at a time per key: the audit's old -> new pairs then chain without gaps.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('runtime_config:' || $1))", key)
            stored = {row["key"]: row["value"] for row in await conn.fetch("SELECT key, value FROM runtime_config")}
            current = apply_overrides(settings, valid_overrides(settings, stored))
            checked = apply_overrides(current, {key: value})  # raises InvalidRequest for an unknown key too
            old, new = _read(current, key), _read(checked, key)
            await conn.execute(
                "INSERT INTO runtime_config (key, value, updated_at, updated_by) VALUES ($1, $2, now(), $3) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), "
                "updated_by = EXCLUDED.updated_by",
                key,
                new,
                actor,
            )
            await conn.execute(
                "INSERT INTO audit_log (actor, action, target, old_value, new_value) "
                "VALUES ($1, 'config.set', $2, $3, $4)",
                actor,
                key,
                old,
                new,
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, key)
        return old, new

    async def audit(self, *, limit: int = 50, action_prefix: str | None = None) -> list[AuditEntry]:
        """The newest audit entries first."""
        rows = await self._database.fetch(
            "SELECT id, at, actor, action, target, old_value, new_value FROM audit_log "
            "WHERE $1::text IS NULL OR action LIKE $1 || '%' ORDER BY at DESC, id DESC LIMIT $2",
            action_prefix,
            limit,
        )
        return [AuditEntry(**dict(row)) for row in rows]


class RuntimeConfig:
    """The live settings of one server process: applies stored overrides to the limiter, logging and `effective`."""

    def __init__(
        self,
        settings: StackSettings,
        limiter: RateLimiter,
        *,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        on_change: Callable[[StackSettings], None] | None = None,
    ) -> None:
        self._base = settings
        self._limiter = limiter
        self._poll_seconds = poll_seconds
        self._on_change = on_change
        self._overrides: dict[str, Any] = {}
        self._rejected: dict[str, Any] = {}
        self.effective = settings
        """The settings in force: configured values with the valid stored overrides applied."""
        self.version = 0
        """Incremented each time a change is applied (tests and pages wait on it)."""
        self._changed: anyio.Event | None = None  # created by the first waiter (inside the event loop)

    def value(self, key: str) -> Any:
        """The value in force for one runtime key."""
        return _read(self.effective, key)

    def apply(self, stored: Mapping[str, Any]) -> None:
        """Apply the stored overrides; an invalid one is logged and skipped, the rest still apply."""
        valid = valid_overrides(self._base, stored)
        rejected = {key: value for key, value in stored.items() if key in RUNTIME_KEYS and key not in valid}
        for key in rejected.keys() - self._rejected.keys():
            logger.warning("invalid runtime setting ignored", extra={"key": key})
        self._rejected = rejected
        if valid == self._overrides:
            return
        try:
            effective = apply_overrides(self._base, valid)
        except InvalidRequest:  # valid one by one, not together (a cross-field rule): keep what is in force
            logger.warning("runtime settings rejected together", extra={"keys": sorted(valid)})
            return
        previous, self.effective, self._overrides = self.effective, effective, valid
        limit = effective.rate_limit
        if limit != previous.rate_limit:
            self._limiter.update(limit.calls_per_minute, limit.burst, enabled=limit.enabled)
        if effective.observability.log_level != previous.observability.log_level:
            logging.getLogger().setLevel(effective.observability.log_level)
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        logger.info("runtime settings applied", extra={"keys": sorted(valid), "version": self.version, **NOTABLE})
        if self._on_change is not None:
            self._on_change(effective)

    async def wait_changed(self, seen: int) -> int:
        """Wait until a change after version `seen` has been applied; returns the version in force."""
        while self.version == seen:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.version

    async def run(self, database: Database, breakers: BreakerRegistry, *, listen: bool = True) -> None:
        """Keep the process's settings in step with PostgreSQL until cancelled; survives database outages.

        While the "postgres" breaker is closed, one pooled connection LISTENs and re-reads on every notification
        and every `poll_seconds`; otherwise the table is polled with short queries (which may serve as the
        breaker's half-open probe: a held listener connection must never be that probe).
        """
        breaker = breakers.get(POSTGRES_BREAKER)
        while True:
            try:
                self.apply(await RuntimeConfigStore(database).load())
                if listen and breaker.state is BreakerState.CLOSED:
                    await self._listen(database)
            except (DependencyUnavailable, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                logger.info("runtime settings unavailable; retrying")
            except Exception:  # top of a background loop: a driver surprise must not end the server's lifespan
                logger.exception("runtime settings watcher failed; retrying")
            await anyio.sleep(self._poll_seconds)

    async def _listen(self, database: Database) -> None:
        wake = anyio.Event()
        events: list[anyio.Event] = [wake]

        def on_notify(_conn: object, _pid: int, _channel: str, _payload: object) -> None:
            events[0].set()

        async with database.connection() as conn:
            await conn.add_listener(CHANNEL, on_notify)
            try:
                while True:
                    self.apply(await _load(conn))
                    with anyio.move_on_after(self._poll_seconds):
                        await events[0].wait()
                    events[0] = anyio.Event()
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await conn.remove_listener(CHANNEL, on_notify)


def _read(settings: StackSettings, key: str) -> Any:
    """The value in force as JSON data (paths as strings, models as objects, secrets masked)."""
    known = RUNTIME_KEYS[key]
    value = getattr(getattr(settings, known.section), known.field)
    return to_jsonable_python(value) if known.structured else value


async def _load(conn: Connection) -> dict[str, Any]:
    rows = await conn.fetch("SELECT key, value FROM runtime_config")
    return {row["key"]: row["value"] for row in rows}
