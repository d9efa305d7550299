"""CircuitBreaker state machine, driven by a fake clock."""

from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel
import pytest

from mcp_servers.shared.config import BreakerSettings
from mcp_servers.shared.errors import DependencyUnavailable, NotFound
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState, CircuitBreaker


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_breaker(
    clock: FakeClock,
    *,
    threshold: int = 3,
    open_seconds: float = 10.0,
    probes: int = 1,
    failure_types: tuple[type[BaseException], ...] = (OSError,),
    transitions: list[tuple[str, BreakerState]] | None = None,
) -> CircuitBreaker:
    settings = BreakerSettings(failure_threshold=threshold, open_seconds=open_seconds, half_open_probes=probes)
    listener = None if transitions is None else (lambda dependency, state: transitions.append((dependency, state)))
    return CircuitBreaker("db", settings, failure_types=failure_types, clock=clock, on_state_change=listener)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A function call, so mypy does not carry a narrowed `state` from one assertion to the next.
    return breaker.state


async def fail(breaker: CircuitBreaker, error: BaseException | None = None) -> None:
    with pytest.raises(type(error) if error is not None else OSError):
        async with breaker:
            raise error if error is not None else OSError("connection refused")


async def succeed(breaker: CircuitBreaker) -> None:
    async with breaker:
        pass


async def open_breaker(breaker: CircuitBreaker, threshold: int = 3) -> None:
    for _ in range(threshold):
        await fail(breaker)
    assert state_of(breaker) is BreakerState.OPEN


@pytest.mark.anyio
async def test_breaker_stays_closed_below_threshold() -> None:
    breaker = make_breaker(FakeClock())
    await fail(breaker)
    await fail(breaker)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.last_error == "OSError"


@pytest.mark.anyio
async def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    transitions: list[tuple[str, BreakerState]] = []
    breaker = make_breaker(FakeClock(), transitions=transitions)
    await open_breaker(breaker)
    assert transitions == [("db", BreakerState.OPEN)]


@pytest.mark.anyio
async def test_success_resets_the_consecutive_failure_count() -> None:
    breaker = make_breaker(FakeClock())
    await fail(breaker)
    await fail(breaker)
    await succeed(breaker)
    assert breaker.last_error is None
    await fail(breaker)
    await fail(breaker)
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_open_breaker_rejects_without_calling_and_reports_time_left() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_seconds=10.0)
    await open_breaker(breaker)
    clock.advance(4.0)
    calls = 0
    with pytest.raises(DependencyUnavailable) as caught:
        async with breaker:
            calls += 1
    assert calls == 0
    assert caught.value.dependency == "db"
    assert caught.value.retry_after_seconds == pytest.approx(6.0)


@pytest.mark.anyio
async def test_rejection_while_open_does_not_extend_the_cool_down() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_seconds=10.0)
    await open_breaker(breaker)
    for _ in range(5):
        clock.advance(1.0)
        with pytest.raises(DependencyUnavailable):
            await succeed(breaker)
    clock.advance(5.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


@pytest.mark.anyio
async def test_breaker_half_opens_after_open_seconds() -> None:
    clock = FakeClock()
    transitions: list[tuple[str, BreakerState]] = []
    breaker = make_breaker(clock, open_seconds=10.0, transitions=transitions)
    await open_breaker(breaker)
    clock.advance(9.99)
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(0.01)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert transitions == [("db", BreakerState.OPEN), ("db", BreakerState.HALF_OPEN)]


@pytest.mark.anyio
async def test_half_open_admits_only_the_configured_number_of_probes() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probes=2)
    await open_breaker(breaker)
    clock.advance(10.0)
    async with AsyncExitStack() as probes:
        await probes.enter_async_context(breaker)
        await probes.enter_async_context(breaker)
        with pytest.raises(DependencyUnavailable) as caught:
            await succeed(breaker)
        assert caught.value.retry_after_seconds > 0
        assert state_of(breaker) is BreakerState.HALF_OPEN
    # The two probes ended without error: that closes the breaker.
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_probe_success_closes_the_breaker() -> None:
    clock = FakeClock()
    transitions: list[tuple[str, BreakerState]] = []
    breaker = make_breaker(clock, transitions=transitions)
    await open_breaker(breaker)
    clock.advance(10.0)
    await succeed(breaker)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.last_error is None
    assert [state for _, state in transitions] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    # Closed again with a fresh count: it takes the full threshold to reopen.
    await fail(breaker)
    await fail(breaker)
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_probe_failure_reopens_for_a_full_cool_down() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_seconds=10.0)
    await open_breaker(breaker)
    clock.advance(15.0)
    await fail(breaker)
    assert state_of(breaker) is BreakerState.OPEN
    with pytest.raises(DependencyUnavailable) as caught:
        await succeed(breaker)
    assert caught.value.retry_after_seconds == pytest.approx(10.0)
    clock.advance(10.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


@pytest.mark.anyio
async def test_exceptions_outside_failure_types_do_not_count() -> None:
    breaker = make_breaker(FakeClock(), threshold=2)
    for _ in range(5):
        await fail(breaker, NotFound("no such document"))
        await fail(breaker, ValueError("bad input"))
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_exceptions_outside_failure_types_do_not_reset_the_count() -> None:
    breaker = make_breaker(FakeClock(), threshold=2)
    await fail(breaker)
    await fail(breaker, NotFound("no such document"))
    await fail(breaker)
    assert state_of(breaker) is BreakerState.OPEN


@pytest.mark.anyio
async def test_non_failure_exception_frees_the_probe_slot_without_closing() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probes=1)
    await open_breaker(breaker)
    clock.advance(10.0)
    await fail(breaker, NotFound("no such document"))
    assert state_of(breaker) is BreakerState.HALF_OPEN
    # The slot is free again: the next probe is admitted and its success closes the breaker.
    await succeed(breaker)
    assert state_of(breaker) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_dependency_unavailable_from_an_inner_breaker_is_not_a_failure() -> None:
    clock = FakeClock()
    outer = make_breaker(clock, threshold=1, failure_types=(Exception,))
    for _ in range(3):
        await fail(outer, DependencyUnavailable("qdrant", reason="circuit open"))
    assert state_of(outer) is BreakerState.CLOSED


@pytest.mark.anyio
async def test_default_failure_types_count_any_exception_but_not_cancellation() -> None:
    breaker = make_breaker(FakeClock(), threshold=1, failure_types=(Exception,))
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with breaker:
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert state_of(breaker) is BreakerState.CLOSED
    await fail(breaker, RuntimeError("boom"))
    assert state_of(breaker) is BreakerState.OPEN


def test_registry_returns_one_breaker_per_dependency_and_snapshots_states() -> None:
    seen: list[tuple[str, BreakerState]] = []
    registry = BreakerRegistry(BreakerSettings(failure_threshold=1), on_state_change=lambda d, s: seen.append((d, s)))
    postgres = registry.get("postgres", failure_types=(OSError,))
    assert registry.get("postgres") is postgres
    registry.get("qdrant")
    postgres.record_failure(OSError("down"))
    assert registry.snapshot() == {"postgres": "open", "qdrant": "closed"}
    assert [breaker.dependency for breaker in registry] == ["postgres", "qdrant"]
    assert seen == [
        ("postgres", BreakerState.CLOSED),
        ("qdrant", BreakerState.CLOSED),
        ("postgres", BreakerState.OPEN),
    ]
