"""Task changes in this process: resource-updated notifications, and wake-ups for code waiting on one task.

Any process may change a task (workers run anywhere), so changes travel through PostgreSQL: the store and the
queue send `NOTIFY ralph_task_changed` and every Ralph server LISTENs on one connection (`TaskChanges.listen`).
Each change is published to clients in both protocol eras (2026-07-28 `subscriptions/listen` streams through the
SDK's subscription bus, and 2025-11-25 sessions that sent `resources/subscribe`) and wakes the in-process watchers
of that task (`stop_task` waiting for the worker's confirmation).
"""

import contextlib
import logging
import uuid
from collections.abc import Iterator

import anyio

from mcp_servers.ralph._sql import CHANNEL
from mcp_servers.ralph.models import iterations_uri, task_uri
from mcp_servers.shared.postgres.notify import listen
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.subscriptions import ResourceFanout

logger = logging.getLogger(__name__)


async def publish_task(fanout: ResourceFanout, task_id: str) -> None:
    """Tell every subscriber of the task's resources (the server's one fanout, both eras) that they changed."""
    for uri in (task_uri(task_id), iterations_uri(task_id)):
        await fanout.resource_updated(uri)


class TaskWatch:
    """Wakes its holder when one task changed, or when changes may have been missed (the listener reconnected)."""

    def __init__(self) -> None:
        self._changed = anyio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        """Return after the next change (at once if one came since the last call); then read the task again."""
        await self._changed.wait()
        self._changed = anyio.Event()


class TaskChanges:
    """NOTIFY ralph_task_changed relayed to the resource fanout (if any) and to watchers of single tasks.

    `listen` holds one LISTEN connection for the process; the lifespan runs it while tools are served.
    """

    def __init__(self, fanout: ResourceFanout | None = None) -> None:
        self._fanout = fanout
        self._watches: dict[str, set[TaskWatch]] = {}

    @contextlib.contextmanager
    def watch(self, task_id: uuid.UUID) -> Iterator[TaskWatch]:
        """Watch one task for the block; open it before the write whose effect you wait for, so none is missed."""
        key = str(task_id)
        watch = TaskWatch()
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    def _wake(self, task_id: str) -> None:
        for watch in self._watches.get(task_id, ()):
            watch.notify()

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.notify()

    async def listen(self, database: Database) -> None:
        """Relay NOTIFY ralph_task_changed until cancelled; reconnects after database outages."""
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)

        def on_payload(task_id: str) -> None:
            self._wake(task_id)  # at once: a waiter never queues behind slow resource subscribers
            if self._fanout is None:
                return
            try:
                send.send_nowait(task_id)
            except anyio.WouldBlock:  # nobody keeps up: drop, clients refetch on the next change
                logger.warning("ralph notification dropped")

        async def relay() -> None:
            async with receive:
                async for task_id in receive:
                    if self._fanout is not None:
                        await publish_task(self._fanout, task_id)

        async with anyio.create_task_group() as tg, send:
            tg.start_soon(relay)
            # Changes committed while nobody listened were not delivered: watchers read again.
            await listen(database, CHANNEL, on_payload, on_listening=self._wake_all)
