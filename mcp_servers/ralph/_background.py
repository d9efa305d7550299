"""Background loops owned by Ralph's lifespan (the worker pool, the notification relay).

The harness may close the lifespan from another task or cancel-scope nesting than the one that opened it (its
dependencies are reference-counted across connections), so an anyio task group cannot span the `yield`. These
loops are asyncio tasks instead: started in the lifespan, cancelled and awaited in its `finally`, never orphans.
(Same pattern as Hybrid's; a candidate for `shared/`.)
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """A set of long-running tasks stopped together by `aclose()`."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` until `aclose()`; a crash is logged, not propagated (it would otherwise vanish)."""

        async def guarded() -> None:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:  # top of a background loop: log, never lose it silently
                logger.exception("background task crashed", extra={"task": name})

        self._tasks.append(asyncio.get_running_loop().create_task(guarded(), name=f"ralph-{name}"))

    async def aclose(self) -> None:
        """Cancel every task and wait until each has finished (workers hand their tasks back first)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
