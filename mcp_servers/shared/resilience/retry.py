"""Retries for idempotent outbound calls only: exponential backoff with full jitter, bounded in attempts and time.

Put the breaker inside the retried function (`async with breaker: ...`) so every attempt counts; once it opens,
its `DependencyUnavailable` is not retried unless the caller lists it in `retry_on`.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

__all__ = ["retry_idempotent"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_idempotent(
    fn: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    attempts: int = 3,
    initial_delay_seconds: float = 0.1,
    max_delay_seconds: float = 2.0,
    max_total_seconds: float = 10.0,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Await `fn()` until it returns, retrying only the exception types in `retry_on`.

    Args:
        fn: a call that is safe to repeat (a read, or a write keyed so that repeating it changes nothing).
        retry_on: transient errors of the dependency, e.g. `(OSError, httpx.TransportError)`.
        attempts: calls in all, including the first.
        initial_delay_seconds: scale of the first backoff; each wait is uniform in [0, scale * 2**n], capped.
        max_delay_seconds: cap on a single wait.
        max_total_seconds: no retry starts if its wait would end later than this after the first call.
        sleep: how to wait; tests pass a recorder.

    Raises:
        The last exception of `fn` when attempts or time run out, or at once for any exception not in `retry_on`.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts) | stop_before_delay(max_total_seconds),
        wait=wait_random_exponential(multiplier=initial_delay_seconds, max=max_delay_seconds),
        retry=retry_if_exception_type(retry_on),
        sleep=sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity either returns, reraises or retries")


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    logger.info(
        "retrying idempotent call",
        extra={
            "attempt": state.attempt_number,
            "delay_seconds": state.upcoming_sleep,
            "error_type": type(error).__name__ if error is not None else None,
        },
    )
