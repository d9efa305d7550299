"""Rate limiting per key (the caller builds the key from principal and tool): GCRA, in memory or shared in Redis.

Both limiters run GCRA in its continuous-state leaky-bucket form: each key has a level, counted in calls, that
drains at `calls_per_minute / 60` per second; a call is admitted when the level plus one fits in `burst`. Keeping
the level in calls (not in seconds, as the virtual-scheduling form does) means a live `update()` of the rate keeps
every key's spent budget as it is.

A call may carry its principal's own rate (`KeyRate`: an API key's `calls_per_minute`/`burst`), used for that call
in place of the limiter's. It is not part of the bucket's key: a principal still has one bucket per tool or method,
so per-key rates create no state their calls would not create anyway.
"""

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from pydantic import ValidationError
from redis import __version__ as redis_version
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from mcp_servers.shared.config import RateLimitSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest, RateLimited
from mcp_servers.shared.resilience.breaker import BreakerRegistry, CircuitBreaker

__all__ = [
    "KEY_PREFIX",
    "REDIS_DEPENDENCY",
    "KeyRate",
    "MemoryRateLimiter",
    "RateLimit",
    "RateLimiter",
    "RedisRateLimiter",
    "create_rate_limiter",
]

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "mcpstack:rl:"
REDIS_DEPENDENCY: Final = "redis"
# A limit check sits in front of every tool call: a slow Redis must cost little before the fallback decides.
DEFAULT_REDIS_TIMEOUT_SECONDS: Final = 0.5
# Float drift (level 2.9999999999 after waiting exactly retry_after) must not refuse a call that is due.
_EPSILON: Final = 1e-9

# KEYS[1] = bucket, ARGV[1] = calls per second, ARGV[2] = burst. Returns {admitted (0/1), retry_after or "0"}.
# Server time keeps every replica on one clock; Redis >= 5 replicates a script that reads TIME by its effects.
# Numbers go back as strings because Redis truncates Lua numbers to integers in replies.
_GCRA_SCRIPT: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = 0
if state[1] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  level = math.max(0, tonumber(state[1]) - elapsed * rate)
end
if level + 1 > burst + 1e-9 then
  return {0, string.format('%.17g', (level + 1 - burst) / rate)}
end
level = level + 1
redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(level / rate * 1000) + 1000)
return {1, '0'}
"""


def _checked_settings(what: str, values: Mapping[str, object]) -> RateLimitSettings:
    """`values` checked against the bounds of `RateLimitSettings`; raises InvalidRequest naming the field."""
    try:
        return RateLimitSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "limit"
        raise InvalidRequest(f"{what} {field}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class KeyRate:
    """A principal's own limit (an API key's), used for its calls in place of the limiter's; None takes the limiter's.

    Bounded like `RateLimitSettings`: build it with `checked` from anything a person typed.
    """

    calls_per_minute: float | None = None
    burst: int | None = None

    @classmethod
    def checked(cls, calls_per_minute: float | None, burst: int | None) -> "KeyRate | None":
        """The rate when either field is set (None when neither is); raises InvalidRequest when out of bounds."""
        if calls_per_minute is None and burst is None:
            return None
        values: dict[str, object] = {"calls_per_minute": calls_per_minute, "burst": burst}
        checked = _checked_settings("key rate", {name: value for name, value in values.items() if value is not None})
        return cls(
            checked.calls_per_minute if calls_per_minute is not None else None,
            checked.burst if burst is not None else None,
        )

    def describe(self) -> str:
        """For people: `6000/min, burst 200`; an unset field reads "default"."""
        rate = "default" if self.calls_per_minute is None else f"{self.calls_per_minute:g}"
        burst = "default" if self.burst is None else str(self.burst)
        return f"{rate}/min, burst {burst}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The limit every key gets: `burst` calls at once, refilled at `calls_per_minute`."""

    calls_per_minute: float
    burst: int
    enabled: bool = True

    @property
    def calls_per_second(self) -> float:
        return self.calls_per_minute / 60.0

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> "RateLimit":
        return cls(settings.calls_per_minute, settings.burst, settings.enabled)

    def replace(self, calls_per_minute: float, burst: int, enabled: bool | None) -> "RateLimit":
        """A new limit checked against the bounds of `RateLimitSettings`; raises InvalidRequest."""
        values = {
            "calls_per_minute": calls_per_minute,
            "burst": burst,
            "enabled": self.enabled if enabled is None else enabled,
        }
        return RateLimit.from_settings(_checked_settings("rate limit", values))

    def for_key(self, rate: KeyRate | None) -> "RateLimit":
        """This limit with a principal's own rate and burst where it has them (`enabled` stays the limiter's)."""
        if rate is None:
            return self
        return RateLimit(
            self.calls_per_minute if rate.calls_per_minute is None else rate.calls_per_minute,
            self.burst if rate.burst is None else rate.burst,
            self.enabled,
        )


class RateLimiter(Protocol):
    """Admits or refuses one call per `acquire`; the limit can change while the process runs."""

    @property
    def limit(self) -> RateLimit: ...

    async def acquire(self, key: str, rate: KeyRate | None = None) -> None:
        """Count one call against `key` at `rate` (None: the limiter's limit); raises RateLimited when spent.

        A refusal's `retry_after_seconds` is > 0 and waiting that long admits the next call (unless others spend it).
        """
        ...

    def update(self, calls_per_minute: float, burst: int, *, enabled: bool | None = None) -> None:
        """Apply a new limit to every key from the next call on; raises InvalidRequest when out of bounds."""
        ...

    async def aclose(self) -> None:
        """Release what the limiter owns."""
        ...


class MemoryRateLimiter:
    """Per-process buckets in a dict; memory stays bounded because drained buckets are dropped.

    A drained bucket is the same as no bucket, so dropping it changes no decision. Beyond `max_keys` live
    buckets the least recently used one is dropped anyway (that key gets a fresh budget), to bound memory
    against a flood of distinct keys. Safe for many tasks on one event loop: `acquire` never awaits inside.
    """

    def __init__(
        self, settings: RateLimitSettings, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._limit = RateLimit.from_settings(settings)
        self._max_keys = max_keys
        self._clock = clock
        # key -> (level in calls, time of that level, the key's own calls per second or None for the limiter's);
        # ordered from least to most recently used.
        self._buckets: OrderedDict[str, tuple[float, float, float | None]] = OrderedDict()

    @property
    def limit(self) -> RateLimit:
        return self._limit

    @property
    def tracked_keys(self) -> int:
        """How many buckets are held now (drained ones are dropped lazily)."""
        return len(self._buckets)

    async def acquire(self, key: str, rate: KeyRate | None = None) -> None:
        """Count one call against `key`; raises RateLimited when its budget is spent."""
        self.check(key, rate)

    def check(self, key: str, rate: KeyRate | None = None) -> None:
        """The synchronous core of `acquire`, for callers that already run without awaiting."""
        limit = self._limit
        if not limit.enabled:
            return
        now = self._clock()
        default_rate = per_second = limit.calls_per_minute / 60.0
        burst = limit.burst
        own_rate: float | None = None
        if rate is not None:
            if rate.calls_per_minute is not None:
                own_rate = per_second = rate.calls_per_minute / 60.0
            if rate.burst is not None:
                burst = rate.burst
        level, at, _ = self._buckets.pop(key, (0.0, now, None))
        # Drain since the last call (the clock is monotonic; min/max builtins cost more than these tests).
        if now > at:
            level -= (now - at) * per_second
            if level < 0.0:
                level = 0.0
        if level + 1 > burst + _EPSILON:
            self._buckets[key] = (level, now, own_rate)
            # > 0 here (level + 1 exceeds burst by more than _EPSILON), and exactly the drain time to fit one call.
            raise RateLimited(retry_after_seconds=(level + 1 - burst) / per_second, limit_key=key)
        self._buckets[key] = (level + 1, now, own_rate)
        self._evict(now, default_rate)

    def _evict(self, now: float, default_rate: float) -> None:
        # Amortised O(1): each bucket is inserted once per use and dropped at most once. Each bucket drains at its
        # key's own rate when it has one (a slow key's bucket is not dropped early because a fast key called).
        while self._buckets:
            key, (level, at, own_rate) = next(iter(self._buckets.items()))
            rate = default_rate if own_rate is None else own_rate
            if len(self._buckets) <= self._max_keys and level - (now - at) * rate > _EPSILON:
                return
            del self._buckets[key]

    def update(self, calls_per_minute: float, burst: int, *, enabled: bool | None = None) -> None:
        """Apply a new limit from the next call on; spent budgets (in calls) are kept."""
        self._limit = self._limit.replace(calls_per_minute, burst, enabled)

    async def aclose(self) -> None:
        """Nothing to release."""
        self._buckets.clear()


class RedisRateLimiter:
    """Buckets in Redis, one budget shared by every process that uses the same Redis and key prefix.

    Each call runs one Lua script (atomic; clock from `TIME` on the server, so replicas' clocks do not matter)
    behind the "redis" circuit breaker. Keys are `<key_prefix><key>` and expire once drained.

    When Redis fails or its breaker is open the limiter fails open to a per-process `MemoryRateLimiter` with
    the same limit: the rate limit protects capacity, it is not an authorisation check, so refusing every
    call because the limiter's own store is down would turn a Redis outage into a full outage of every
    server. Each process still enforces the budget locally, so the worst case is N replicas x the limit.
    The first fallback after a success logs a WARNING; `store_unavailable_total` counts fallback decisions
    (export it as a metric).

    Lifecycle: `aclose()` closes the client only if this limiter created it (`from_url`).
    """

    def __init__(
        self,
        client: Redis,
        settings: RateLimitSettings,
        breaker: CircuitBreaker,
        *,
        key_prefix: str = KEY_PREFIX,
        owns_client: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._breaker = breaker
        self._key_prefix = key_prefix
        self._owns_client = owns_client
        self._limit = RateLimit.from_settings(settings)
        self._script = client.register_script(_GCRA_SCRIPT)
        self._fallback = MemoryRateLimiter(settings, clock=clock)
        self._degraded = False
        self.store_unavailable_total = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: RateLimitSettings,
        breaker: CircuitBreaker,
        *,
        key_prefix: str = KEY_PREFIX,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
    ) -> "RedisRateLimiter":
        """A limiter with its own client; retries are off because the breaker and the fallback decide."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            # Without it each new connection reads package metadata from disk, a blocking call on the event loop.
            driver_info=DriverInfo(lib_version=redis_version),
        )
        return cls(client, settings, breaker, key_prefix=key_prefix, owns_client=True)

    @property
    def limit(self) -> RateLimit:
        return self._limit

    @property
    def degraded(self) -> bool:
        """True while decisions are taken by the per-process fallback."""
        return self._degraded

    async def acquire(self, key: str, rate: KeyRate | None = None) -> None:
        """Count one call against `key` in Redis; raises RateLimited when the shared budget is spent."""
        if not self._limit.enabled:
            return
        limit = self._limit.for_key(rate)
        try:
            async with self._breaker:
                reply = await self._script(
                    keys=[self._key_prefix + key], args=[repr(limit.calls_per_second), limit.burst]
                )
        except (RedisError, OSError, DependencyUnavailable) as exc:
            self._fall_back(exc)
            self._fallback.check(key, rate)
            return
        if self._degraded:
            self._degraded = False
            logger.info("rate limit store recovered", extra={"dependency": REDIS_DEPENDENCY})
        admitted, retry_after = _parse_reply(reply)
        if not admitted:
            raise RateLimited(retry_after_seconds=retry_after, limit_key=key)

    def _fall_back(self, error: BaseException) -> None:
        self.store_unavailable_total += 1
        if not self._degraded:
            self._degraded = True
            logger.warning(
                "rate limit store unavailable; enforcing per-process limits",
                extra={"dependency": REDIS_DEPENDENCY, "error_type": type(error).__name__},
            )

    def update(self, calls_per_minute: float, burst: int, *, enabled: bool | None = None) -> None:
        """Apply a new limit from this process's next call on (each process passes its limit to the script)."""
        self._limit = self._limit.replace(calls_per_minute, burst, enabled)
        self._fallback.update(calls_per_minute, burst, enabled=enabled)

    async def aclose(self) -> None:
        """Close the client if `from_url` created it."""
        if self._owns_client:
            await self._client.aclose()


def _parse_reply(reply: object) -> tuple[bool, float]:
    """Decode the script's `{admitted, retry_after}` reply."""
    if not isinstance(reply, list) or len(reply) != 2:
        raise TypeError("unexpected reply from the rate limit script")
    admitted, retry_after = reply
    value = float(retry_after.decode() if isinstance(retry_after, bytes) else retry_after)
    return bool(int(admitted)), value if math.isfinite(value) else 1.0


def create_rate_limiter(settings: RateLimitSettings, breakers: BreakerRegistry) -> RateLimiter:
    """The process's limiter: Redis-backed when `redis_url` is set (shared budget), otherwise in memory."""
    if settings.redis_url is None:
        return MemoryRateLimiter(settings)
    breaker = breakers.get(REDIS_DEPENDENCY, failure_types=(RedisError, OSError))
    return RedisRateLimiter.from_url(settings.redis_url.get_secret_value(), settings, breaker)
