"""Async circuit breaker: CLOSED -> OPEN after consecutive failures, HALF_OPEN probes after a cool-down.

Usage, around every outbound call:

    async with breaker:
        await pool.fetch(...)

An open breaker raises `DependencyUnavailable` at once (no call is made). Only exceptions listed in
`failure_types` count as failures: a `NotFound` from the dependency is an answer, not an outage.
"""

import enum
import logging
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from mcp_servers.shared.config import BreakerSettings
from mcp_servers.shared.errors import DependencyUnavailable

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateListener = Callable[[str, BreakerState], None]


class CircuitBreaker:
    """One dependency's breaker. Safe for many concurrent tasks on one event loop (no awaits inside)."""

    def __init__(
        self,
        dependency: str,
        settings: BreakerSettings,
        *,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
    ) -> None:
        self.dependency = dependency
        self._settings = settings
        self._failure_types = failure_types
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        """Current state; an OPEN breaker whose cool-down has passed reports HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._cooldown_left() <= 0:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def _cooldown_left(self) -> float:
        return self._opened_at + self._settings.open_seconds - self._clock()

    def _transition(self, state: BreakerState) -> None:
        if state is self._state:
            return
        logger.warning(
            "circuit breaker state change",
            extra={"dependency": self.dependency, "from_state": self._state.value, "to_state": state.value},
        )
        self._state = state
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
        if state is not BreakerState.HALF_OPEN:
            self._probes_in_flight = 0
        if self._on_state_change is not None:
            self._on_state_change(self.dependency, state)

    def before_call(self) -> None:
        """Admit a call or raise DependencyUnavailable; pair with `record_success`/`record_failure`."""
        state = self.state
        if state is BreakerState.OPEN:
            raise DependencyUnavailable(
                self.dependency, retry_after_seconds=max(self._cooldown_left(), 0.1), reason="circuit open"
            )
        if state is BreakerState.HALF_OPEN:
            if self._probes_in_flight >= self._settings.half_open_probes:
                raise DependencyUnavailable(
                    self.dependency, retry_after_seconds=self._settings.open_seconds, reason="circuit half-open"
                )
            self._probes_in_flight += 1

    def record_success(self) -> None:
        self._consecutive_failures = 0
        self.last_error = None
        self._transition(BreakerState.CLOSED)

    def record_failure(self, error: BaseException) -> None:
        self._consecutive_failures += 1
        self.last_error = type(error).__name__
        if self._state is BreakerState.HALF_OPEN or self._consecutive_failures >= self._settings.failure_threshold:
            self._transition(BreakerState.OPEN)
            self._opened_at = self._clock()

    def release_probe(self) -> None:
        """Free a half-open slot for a call that ended neither in success nor in a counted failure."""
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    async def __aenter__(self) -> "CircuitBreaker":
        self.before_call()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.record_success()
        elif isinstance(exc, self._failure_types) and not isinstance(exc, DependencyUnavailable):
            self.record_failure(exc)
        else:
            self.release_probe()


class BreakerRegistry:
    """The breakers of one process, by dependency name; created on first use with shared settings."""

    def __init__(self, settings: BreakerSettings, on_state_change: StateListener | None = None) -> None:
        self._settings = settings
        self._on_state_change = on_state_change
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, dependency: str, *, failure_types: tuple[type[BaseException], ...] = (Exception,)) -> CircuitBreaker:
        breaker = self._breakers.get(dependency)
        if breaker is None:
            breaker = CircuitBreaker(
                dependency, self._settings, failure_types=failure_types, on_state_change=self._on_state_change
            )
            self._breakers[dependency] = breaker
            if self._on_state_change is not None:
                self._on_state_change(dependency, BreakerState.CLOSED)
        return breaker

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def snapshot(self) -> dict[str, str]:
        """Dependency name -> state value, for /ready and the dashboard."""
        return {breaker.dependency: breaker.state.value for breaker in self}
