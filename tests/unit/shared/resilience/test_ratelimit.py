"""MemoryRateLimiter (GCRA) with an injected clock, and the factory's choice of limiter."""

import pytest

from mcp_servers.shared.config import BreakerSettings, RateLimitSettings
from mcp_servers.shared.errors import InvalidRequest, RateLimited
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import (
    MemoryRateLimiter,
    RateLimit,
    RedisRateLimiter,
    create_rate_limiter,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_limiter(
    clock: FakeClock, *, calls_per_minute: float = 60.0, burst: int = 3, max_keys: int = 1000
) -> MemoryRateLimiter:
    settings = RateLimitSettings(calls_per_minute=calls_per_minute, burst=burst)
    return MemoryRateLimiter(settings, max_keys=max_keys, clock=clock)


async def admitted(limiter: MemoryRateLimiter, key: str, calls: int) -> int:
    """How many of `calls` back-to-back acquires were admitted."""
    count = 0
    for _ in range(calls):
        try:
            await limiter.acquire(key)
        except RateLimited:
            continue
        count += 1
    return count


@pytest.mark.anyio
async def test_call_after_the_burst_is_refused_with_retry_info() -> None:
    limiter = make_limiter(FakeClock(), calls_per_minute=60.0, burst=3)
    for _ in range(3):
        await limiter.acquire("aidb:alice:search_documents")
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("aidb:alice:search_documents")
    assert caught.value.limit_key == "aidb:alice:search_documents"
    # One call per second refills: the next call is due in one second.
    assert caught.value.retry_after_seconds == pytest.approx(1.0)


@pytest.mark.anyio
async def test_keys_have_separate_budgets() -> None:
    limiter = make_limiter(FakeClock(), burst=2)
    assert await admitted(limiter, "alice", 5) == 2
    assert await admitted(limiter, "bob", 5) == 2


@pytest.mark.anyio
async def test_budget_refills_over_time() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=3)
    assert await admitted(limiter, "k", 3) == 3
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("k")
    clock.advance(caught.value.retry_after_seconds)
    await limiter.acquire("k")
    assert await admitted(limiter, "k", 1) == 0
    clock.advance(2.5)
    assert await admitted(limiter, "k", 5) == 2
    clock.advance(3600.0)
    assert await admitted(limiter, "k", 5) == 3


@pytest.mark.anyio
async def test_refused_calls_do_not_spend_budget() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=1)
    await limiter.acquire("k")
    for _ in range(10):
        clock.advance(0.05)
        with pytest.raises(RateLimited):
            await limiter.acquire("k")
    clock.advance(0.5)
    await limiter.acquire("k")


@pytest.mark.anyio
async def test_retry_after_shrinks_as_time_passes() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=6.0, burst=1)
    await limiter.acquire("k")
    clock.advance(4.0)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("k")
    assert caught.value.retry_after_seconds == pytest.approx(6.0)


@pytest.mark.anyio
async def test_update_raising_burst_admits_more_at_once() -> None:
    limiter = make_limiter(FakeClock(), calls_per_minute=60.0, burst=2)
    assert await admitted(limiter, "k", 3) == 2
    limiter.update(60.0, 5)
    assert limiter.limit == RateLimit(60.0, 5)
    assert await admitted(limiter, "k", 5) == 3


@pytest.mark.anyio
async def test_update_lowering_the_limit_keeps_spent_budget() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=10)
    assert await admitted(limiter, "k", 4) == 4
    limiter.update(6.0, 4)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("k")
    # Four calls spent out of four; at the new rate (one per 10 s) the next is due in 10 s.
    assert caught.value.retry_after_seconds == pytest.approx(10.0)
    clock.advance(10.0)
    await limiter.acquire("k")


@pytest.mark.anyio
async def test_update_can_disable_and_enable_the_limiter() -> None:
    limiter = make_limiter(FakeClock(), burst=1)
    limiter.update(60.0, 1, enabled=False)
    assert await admitted(limiter, "k", 10) == 10
    limiter.update(60.0, 1)
    assert not limiter.limit.enabled
    limiter.update(60.0, 1, enabled=True)
    assert await admitted(limiter, "k", 10) == 1


@pytest.mark.parametrize(("calls_per_minute", "burst"), [(0.0, 5), (-1.0, 5), (60.0, 0), (2_000_000.0, 5)])
def test_update_out_of_bounds_is_refused_and_keeps_the_limit(calls_per_minute: float, burst: int) -> None:
    limiter = make_limiter(FakeClock(), calls_per_minute=60.0, burst=3)
    with pytest.raises(InvalidRequest):
        limiter.update(calls_per_minute, burst)
    assert limiter.limit == RateLimit(60.0, 3)


@pytest.mark.anyio
async def test_drained_keys_are_evicted() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=3)
    for index in range(100):
        await limiter.acquire(f"caller-{index}")
    assert limiter.tracked_keys == 100
    # Each bucket holds one call, drained after one second.
    clock.advance(1.0)
    await limiter.acquire("fresh")
    assert limiter.tracked_keys == 1


@pytest.mark.anyio
async def test_eviction_keeps_buckets_that_still_hold_calls() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=3)
    assert await admitted(limiter, "busy", 3) == 3
    clock.advance(1.0)
    await limiter.acquire("other")
    assert limiter.tracked_keys == 2
    assert await admitted(limiter, "busy", 2) == 1


@pytest.mark.anyio
async def test_key_count_is_bounded_by_max_keys() -> None:
    limiter = make_limiter(FakeClock(), max_keys=10)
    for index in range(1000):
        await limiter.acquire(f"caller-{index}")
        assert limiter.tracked_keys <= 10


@pytest.mark.anyio
async def test_factory_builds_memory_limiter_without_redis_url() -> None:
    registry = BreakerRegistry(BreakerSettings())
    limiter = create_rate_limiter(RateLimitSettings(calls_per_minute=30.0, burst=7), registry)
    assert isinstance(limiter, MemoryRateLimiter)
    assert limiter.limit == RateLimit(30.0, 7)
    assert registry.snapshot() == {}
    await limiter.aclose()


@pytest.mark.anyio
async def test_factory_builds_redis_limiter_with_a_redis_breaker() -> None:
    registry = BreakerRegistry(BreakerSettings())
    settings = RateLimitSettings.model_validate({"redis_url": "redis://127.0.0.1:6379/0"})
    limiter = create_rate_limiter(settings, registry)
    # Building connects to nothing; the breaker exists from the start so /ready can show it.
    assert isinstance(limiter, RedisRateLimiter)
    assert registry.snapshot() == {"redis": "closed"}
    await limiter.aclose()
