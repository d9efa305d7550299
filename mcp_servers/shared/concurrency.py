"""Run a few awaitables side by side and get their results, with failures raised as themselves.

anyio task groups wrap a failure in an ExceptionGroup; callers here handle `StackError`s (DependencyUnavailable,
InvalidRequest), so the first failure is re-raised unwrapped once the others are cancelled.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

A = TypeVar("A")
B = TypeVar("B")


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (possibly nested) group."""
    first: BaseException = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def both(first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]]) -> tuple[A, B]:
    """Await `first()` and `second()` concurrently; if either fails, the other is cancelled and the failure raised."""
    firsts: list[A] = []
    seconds: list[B] = []

    async def run_first() -> None:
        firsts.append(await first())

    async def run_second() -> None:
        seconds.append(await second())

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run_first)
            group.start_soon(run_second)
    except ExceptionGroup as failure:
        raise first_leaf(failure) from None
    return firsts[0], seconds[0]
