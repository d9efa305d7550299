"""Long-running loops owned by a server's lifespan (workers, pipelines, relays), in one anyio task group.

    async with background_tasks("ralph") as background:
        background.start("workers", pool.run)
        yield deps

A loop that crashes is logged and does not take its siblings or the server down; leaving the block cancels every
loop and waits for each to finish. The harness closes a lifespan in the task that opened it, so the task group
spans the `yield` safely.
"""

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """Starts named loops in the owner's task group."""

    def __init__(self, owner: str, task_group: TaskGroup) -> None:
        self._owner = owner
        self._task_group = task_group

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` until the block ends; a crash is logged, never silently lost or propagated."""

        async def guarded() -> None:
            try:
                await loop()
            except Exception:  # top of a background loop: log it; cancellation is not an Exception
                logger.exception("background task crashed", extra={"owner": self._owner, "task": name})

        self._task_group.start_soon(guarded, name=f"{self._owner}-{name}")


@contextlib.asynccontextmanager
async def background_tasks(owner: str) -> AsyncIterator[BackgroundTasks]:
    """A task group whose loops are cancelled, and awaited, when the block exits."""
    async with anyio.create_task_group() as task_group:
        try:
            yield BackgroundTasks(owner, task_group)
        finally:
            task_group.cancel_scope.cancel()
