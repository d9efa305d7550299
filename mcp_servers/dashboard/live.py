"""Live pages: change signals, Ralph's task changes heard on PostgreSQL NOTIFY, and the one SSE stream helper.

A stream sends an event when what it reads changed: it re-reads when its `Changes` signal moves (a new status
sample, a task's NOTIFY), and otherwise only every `fallback_seconds`, a safety net for a lost notification.
"""

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final

import anyio
from sse_starlette import EventSourceResponse

from mcp_servers.shared.errors import StackError
from mcp_servers.shared.postgres.notify import TASK_CHANGED_CHANNEL, listen
from mcp_servers.shared.postgres.pool import Database

__all__ = ["SESSION_RECHECK_SECONDS", "SSE_PING_SECONDS", "Changes", "TaskChanges", "live_stream"]

logger = logging.getLogger(__name__)

SSE_PING_SECONDS: Final = 15
SESSION_RECHECK_SECONDS: Final = 10.0
ERROR_RETRY_SECONDS: Final = 1.0
"""After a failed read (Ralph down), re-read this soon: its recovery sends no notification."""


class Changes:
    """A version that grows on every change; waiters wake when it passes the version they saw."""

    def __init__(self) -> None:
        self.version = 0
        self._changed = anyio.Event()

    def notify(self) -> None:
        """Record a change and wake every waiter."""
        self.version += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, seen: int) -> None:
        """Wait until the version is newer than `seen` (callers bound the wait with a cancel scope)."""
        while self.version <= seen:
            await self._changed.wait()


class TaskChanges:
    """Ralph's task changes, from its store's NOTIFY: any task (`any`), or one task (`watch(task_id)`)."""

    def __init__(self) -> None:
        self.any = Changes()
        self._tasks: dict[str, tuple[Changes, int]] = {}

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[Changes]:
        """The change signal of one task, for the duration of the block (kept while any stream watches it)."""
        changes, watchers = self._tasks.get(task_id, (Changes(), 0))
        self._tasks[task_id] = (changes, watchers + 1)
        try:
            yield changes
        finally:
            changes, watchers = self._tasks[task_id]
            if watchers == 1:
                del self._tasks[task_id]
            else:
                self._tasks[task_id] = (changes, watchers - 1)

    def publish(self, task_id: str) -> None:
        """One task changed (a NOTIFY payload is its id)."""
        self.any.notify()
        watched = self._tasks.get(task_id)
        if watched is not None:
            watched[0].notify()

    def publish_all(self) -> None:
        """Any task may have changed (the listener reconnected and may have missed notifications)."""
        self.any.notify()
        for changes, _ in self._tasks.values():
            changes.notify()

    async def run(self, database: Database) -> None:
        """Listen to Ralph's channel until cancelled (one held connection; reconnects after outages)."""
        await listen(database, TASK_CHANGED_CHANNEL, self.publish, on_listening=self.publish_all)


def live_stream(
    *,
    event: str,
    read: Callable[[], Awaitable[Any]],
    changes: contextlib.AbstractContextManager[Changes],
    signed_in: Callable[[], Awaitable[bool]],
    fallback_seconds: float,
) -> EventSourceResponse:
    """An SSE response that sends `event` with `read()`'s JSON whenever it differs from the last one sent.

    `read` runs at the start, after every change signal and every `fallback_seconds`; a StackError it raises is
    sent as `{"error": message}` and retried after `ERROR_RETRY_SECONDS`. The session is re-checked every
    `SESSION_RECHECK_SECONDS`, so logout and expiry end open streams. `changes` is entered while the stream runs
    (`contextlib.nullcontext(signal)` for a signal that needs no subscription, `TaskChanges.watch` for one task).
    """

    async def stream() -> AsyncIterator[dict[str, str]]:
        with changes as signal:
            last: str | None = None
            recheck_at = time.monotonic() + SESSION_RECHECK_SECONDS
            while True:
                seen = signal.version  # taken before reading: a change during the read wakes the next wait
                try:
                    data = json.dumps(await read())
                    refresh_at = time.monotonic() + fallback_seconds
                except StackError as exc:
                    data = json.dumps({"error": str(exc)})
                    refresh_at = time.monotonic() + min(fallback_seconds, ERROR_RETRY_SECONDS)
                if data != last:
                    last = data
                    yield {"event": event, "data": data}
                while True:
                    with anyio.move_on_after(max(0.0, min(refresh_at, recheck_at) - time.monotonic())):
                        await signal.wait(seen)
                    woken = signal.version > seen
                    if time.monotonic() >= recheck_at:
                        if not await signed_in():
                            return
                        recheck_at = time.monotonic() + SESSION_RECHECK_SECONDS
                    if woken or time.monotonic() >= refresh_at:
                        break

    return EventSourceResponse(stream(), ping=SSE_PING_SECONDS)
