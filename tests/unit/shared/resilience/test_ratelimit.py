"""MemoryRateLimiter (GCRA) with an injected clock, and the factory's choice of limiter."""

import pytest

from mcp_servers.shared.config import BreakerSettings, RateLimitSettings
from mcp_servers.shared.errors import InvalidRequest, RateLimited, retry_after_milliseconds
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import (
    KeyRate,
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


async def admitted(limiter: MemoryRateLimiter, key: str, calls: int, rate: KeyRate | None = None) -> int:
    """How many of `calls` back-to-back acquires were admitted."""
    count = 0
    for _ in range(calls):
        try:
            await limiter.acquire(key, rate)
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


@pytest.mark.anyio
async def test_a_key_with_its_own_rate_gets_its_own_burst_and_refill() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=3)
    bulk = KeyRate(calls_per_minute=6000.0, burst=200)
    assert await admitted(limiter, "aidb:bulk:ingest", 250, bulk) == 200
    assert await admitted(limiter, "aidb:default:ingest", 250) == 3
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("aidb:bulk:ingest", bulk)
    # 100 calls a second refill one call in 10 ms.
    assert caught.value.retry_after_seconds == pytest.approx(0.01)
    clock.advance(1.0)
    assert await admitted(limiter, "aidb:bulk:ingest", 150, bulk) == 100
    assert await admitted(limiter, "aidb:default:ingest", 5) == 1


@pytest.mark.anyio
async def test_a_key_rate_may_set_only_the_burst_or_only_the_rate() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=3)
    assert await admitted(limiter, "burst-only", 20, KeyRate(burst=10)) == 10
    with pytest.raises(RateLimited) as burst_only:
        await limiter.acquire("burst-only", KeyRate(burst=10))
    assert burst_only.value.retry_after_seconds == pytest.approx(1.0)  # the limiter's rate
    assert await admitted(limiter, "rate-only", 20, KeyRate(calls_per_minute=6.0)) == 3  # the limiter's burst
    with pytest.raises(RateLimited) as rate_only:
        await limiter.acquire("rate-only", KeyRate(calls_per_minute=6.0))
    assert rate_only.value.retry_after_seconds == pytest.approx(10.0)


@pytest.mark.anyio
async def test_a_slower_key_rate_throttles_below_the_default() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=600.0, burst=5)
    slow = KeyRate(calls_per_minute=1.0, burst=1)
    assert await admitted(limiter, "slow", 5, slow) == 1
    clock.advance(30.0)
    assert await admitted(limiter, "slow", 5, slow) == 0
    clock.advance(30.0)
    assert await admitted(limiter, "slow", 5, slow) == 1


@pytest.mark.anyio
async def test_waiting_exactly_the_reported_time_admits_even_for_the_fastest_key() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60.0, burst=1)
    fastest = KeyRate(calls_per_minute=1_000_000.0, burst=1)
    for _ in range(50):
        await limiter.acquire("fast", fastest)
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire("fast", fastest)
        wait = caught.value.retry_after_seconds
        # 60 microseconds: above zero, and reported as a whole millisecond, never "0.00" or "retry in 0 s".
        assert 0 < wait < 0.001
        assert retry_after_milliseconds(wait) == 0.001
        assert str(caught.value).endswith("retry in 1 s")
        clock.advance(wait)


@pytest.mark.anyio
async def test_key_rates_add_no_buckets_beyond_one_per_key() -> None:
    limiter = make_limiter(FakeClock(), burst=3)
    for index in range(20):
        await admitted(limiter, "aidb:bulk:search", 5, KeyRate(calls_per_minute=60.0 + index, burst=3 + index))
    assert limiter.tracked_keys == 1


@pytest.mark.anyio
async def test_eviction_drains_each_bucket_at_its_own_keys_rate() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, calls_per_minute=60_000.0, burst=3)
    slow = KeyRate(calls_per_minute=1.0, burst=1)
    await limiter.acquire("slow", slow)
    clock.advance(1.0)
    # Drained at the limiter's rate, not at the slow key's: a call of another key must not drop it.
    await limiter.acquire("other")
    assert limiter.tracked_keys == 2
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("slow", slow)
    assert caught.value.retry_after_seconds == pytest.approx(59.0)


@pytest.mark.anyio
async def test_a_disabled_limiter_ignores_key_rates() -> None:
    limiter = make_limiter(FakeClock(), burst=1)
    limiter.update(60.0, 1, enabled=False)
    assert await admitted(limiter, "k", 10, KeyRate(calls_per_minute=1.0, burst=1)) == 10


@pytest.mark.parametrize(
    ("calls_per_minute", "burst", "field"),
    [
        (0.0, None, "calls_per_minute"),
        (-5.0, 10, "calls_per_minute"),
        (1_000_001.0, None, "calls_per_minute"),
        (float("nan"), None, "calls_per_minute"),
        (float("inf"), None, "calls_per_minute"),
        (None, 0, "burst"),
        (600.0, 100_001, "burst"),
    ],
)
def test_key_rates_out_of_bounds_are_refused(calls_per_minute: float | None, burst: int | None, field: str) -> None:
    with pytest.raises(InvalidRequest, match=f"key rate {field}"):
        KeyRate.checked(calls_per_minute, burst)


def test_key_rates_in_bounds_are_kept_and_none_means_the_default() -> None:
    assert KeyRate.checked(None, None) is None
    assert KeyRate.checked(1_000_000.0, 100_000) == KeyRate(1_000_000.0, 100_000)
    assert KeyRate.checked(None, 5) == KeyRate(None, 5)
    assert KeyRate(6000.0, None).describe() == "6000/min, burst default"
