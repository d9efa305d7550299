"""retry_idempotent: which errors are retried, how often, and how long the waits are."""

import random

import pytest

from mcp_servers.shared.config import BreakerSettings
from mcp_servers.shared.errors import DependencyUnavailable, NotFound
from mcp_servers.shared.resilience.breaker import CircuitBreaker
from mcp_servers.shared.resilience.retry import retry_idempotent


class Flaky:
    """Fails with the given errors, in order, then returns "ok"; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self._errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)
        return "ok"


class SleepRecorder:
    """Stands in for anyio.sleep: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.mark.anyio
async def test_transient_errors_are_retried_until_success() -> None:
    fn, sleep = Flaky(OSError("reset"), TimeoutError()), SleepRecorder()
    assert await retry_idempotent(fn, retry_on=(OSError,), attempts=3, sleep=sleep) == "ok"
    assert fn.calls == 3
    assert len(sleep.delays) == 2


@pytest.mark.anyio
async def test_last_error_is_raised_when_attempts_run_out() -> None:
    fn = Flaky(OSError("one"), OSError("two"), OSError("three"), OSError("four"))
    with pytest.raises(OSError) as caught:
        await retry_idempotent(fn, retry_on=(OSError,), attempts=3, sleep=SleepRecorder())
    assert str(caught.value) == "three"
    assert fn.calls == 3


@pytest.mark.anyio
async def test_errors_outside_retry_on_are_raised_at_once() -> None:
    fn, sleep = Flaky(NotFound("no such document")), SleepRecorder()
    with pytest.raises(NotFound):
        await retry_idempotent(fn, retry_on=(OSError,), sleep=sleep)
    assert fn.calls == 1
    assert sleep.delays == []


# Seven retries from 0.1 s, capped at 1 s: each wait is drawn below a ceiling that doubles up to the cap.
CEILINGS = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


async def _seven_retries() -> list[float]:
    fn, sleep = Flaky(*[OSError() for _ in range(7)]), SleepRecorder()
    await retry_idempotent(
        fn,
        retry_on=(OSError,),
        attempts=8,
        initial_delay_seconds=0.1,
        max_delay_seconds=1.0,
        max_total_seconds=100.0,
        sleep=sleep,
    )
    return sleep.delays


@pytest.mark.anyio
async def test_wait_ceilings_double_from_the_initial_delay_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full jitter draws each wait uniformly from [0, ceiling]; drawing the ceiling itself exposes the schedule.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert await _seven_retries() == pytest.approx(CEILINGS)


@pytest.mark.anyio
async def test_waits_are_jittered_below_their_ceilings() -> None:
    delays = await _seven_retries()
    assert len(delays) == len(CEILINGS)
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(delays, CEILINGS, strict=True))
    # Without jitter the three capped waits would all be exactly 1 s.
    assert len(set(delays[4:])) == 3


@pytest.mark.anyio
async def test_total_time_bound_stops_retries_whose_wait_would_overrun_it() -> None:
    fn, sleep = Flaky(*[OSError() for _ in range(10)]), SleepRecorder()
    with pytest.raises(OSError):
        # A zero time budget leaves room for no wait, hence no retry.
        await retry_idempotent(
            fn,
            retry_on=(OSError,),
            attempts=10,
            initial_delay_seconds=5.0,
            max_delay_seconds=5.0,
            max_total_seconds=0.0,
            sleep=sleep,
        )
    assert fn.calls == 1
    assert sleep.delays == []


@pytest.mark.anyio
async def test_open_breaker_inside_the_retried_call_stops_the_retries() -> None:
    breaker = CircuitBreaker("llm", BreakerSettings(failure_threshold=2, open_seconds=30.0), failure_types=(OSError,))
    fn = Flaky(*[OSError() for _ in range(10)])

    async def call() -> str:
        async with breaker:
            return await fn()

    with pytest.raises(DependencyUnavailable):
        await retry_idempotent(call, retry_on=(OSError,), attempts=5, sleep=SleepRecorder())
    assert fn.calls == 2


@pytest.mark.anyio
async def test_attempts_below_one_are_refused() -> None:
    fn = Flaky()
    with pytest.raises(ValueError):
        await retry_idempotent(fn, retry_on=(OSError,), attempts=0)
    assert fn.calls == 0
