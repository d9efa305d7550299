"""Ralph's worker pool: claim tasks from PostgreSQL, renew their leases, honour stop requests, hand tasks back.

One `WorkerPool` per process runs up to `concurrency` tasks at once, each through the `TaskRunner` (`runner.py`).
A control loop polls (every `control_poll_seconds`, at most 0.5 s) for stop requests and renews leases; a stop
cancels the running iteration, which kills its process group. A task whose lease this worker lost (e.g. it
stalled) is dropped at once, and its running command killed, so two workers never run the same task. Workers are
safe to run in many processes and on many machines against one database. At start, a pool hands back at once the
tasks held by earlier workers on this host whose process is gone (a crash, SIGKILL, a closed terminal), so a
restart resumes them within a poll instead of after their lease.

While Hybrid's learning pipeline signals telemetry backpressure, workers claim no task and start no iteration
(running iterations finish); they re-check with a backoff of up to `_HOLD_MAX_SECONDS` and resume when it clears.
"""

import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mcp_servers.ralph.backends.registry import BackendRegistry
from mcp_servers.ralph.domain import CompletionReason, Task
from mcp_servers.ralph.events import TaskEvents
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.ralph.process import kill_orphan_group
from mcp_servers.ralph.queue import Claimed, TaskQueue
from mcp_servers.ralph.runner import Slot, TaskRunner
from mcp_servers.ralph.sandbox import Sandbox
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

# Backoff while telemetry backpressure holds new work back: from the first delay, doubling up to the maximum.
_HOLD_FIRST_SECONDS: Final = 0.1
_HOLD_MAX_SECONDS: Final = 2.0


def _process_alive(worker_id: str, prefix: str) -> bool:
    """Whether the process named in a `host:pid:nonce` worker id still runs on this host (unknown: alive)."""
    pid_text = worker_id.removeprefix(prefix).split(":", 1)[0]
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists under another user
        return True
    return True


class WorkerPool:
    """Runs tasks from the shared queue in this process. Owns nothing it is given."""

    def __init__(
        self,
        *,
        queue: TaskQueue,
        backends: BackendRegistry,
        settings: StackSettings,
        events: TaskEvents,
        sandbox: Sandbox,
        concurrency: int | None = None,
        worker_id: str | None = None,
        metrics: RalphMetrics | None = None,
    ) -> None:
        self._queue = queue
        self._ralph = settings.ralph
        self._events = events
        self._metrics = metrics
        self.concurrency = settings.ralph.workers if concurrency is None else concurrency
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runner = TaskRunner(
            queue=queue,
            backends=backends,
            settings=settings,
            events=events,
            worker_id=self.worker_id,
            host=self.host,
            hold_back=self._hold_back,
            emit_later=self._emit_later,
            sandbox=sandbox,
            metrics=metrics,
        )
        self._slots: dict[uuid.UUID, Slot] = {}
        self._wake = anyio.Event()
        # Per-iteration events leave the loop's critical path (task state changes are still emitted inline);
        # the stream exists while `run` does.
        self._events_out: MemoryObjectSendStream[tuple[str, Task, dict[str, Any]]] | None = None
        self._backpressure = False  # inside a backpressure episode (logged once when it starts and ends)

    @property
    def running(self) -> int:
        """Tasks this pool holds right now."""
        return len(self._slots)

    def wake(self) -> None:
        """Look for work now instead of at the next poll (e.g. after a submit in this process)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim and run tasks until cancelled; on cancellation hand running tasks back to the queue."""
        logger.info("ralph workers started", extra={"worker_id": self.worker_id, "concurrency": self.concurrency})
        send, receive = anyio.create_memory_object_stream[tuple[str, Task, dict[str, Any]]](max_buffer_size=10_000)
        self._events_out = send
        await self._take_over_from_dead_predecessors()
        async with send, receive, anyio.create_task_group() as tg:
            tg.start_soon(self._control_loop)
            tg.start_soon(self._send_events, receive)
            task_status.started()
            await self._claim_loop(tg)

    # -- claiming and control -----------------------------------------------------------------------------

    async def _claim_loop(self, tg: TaskGroup) -> None:
        while True:
            free = self.concurrency - len(self._slots)
            claimed: list[Claimed] = []
            if free > 0:
                await self._hold_back()  # no new task under telemetry backpressure
                free = self.concurrency - len(self._slots)  # tasks may have ended meanwhile
                try:
                    claimed = await self._queue.claim(
                        self.worker_id, limit=free, lease_seconds=self._ralph.lease_seconds
                    )
                except DependencyUnavailable:
                    logger.warning("ralph claim failed; retrying", extra={"worker_id": self.worker_id})
                except Exception:  # top of a background loop: log and keep claiming
                    logger.exception("ralph claim crashed; retrying")
                for item in claimed:
                    slot = Slot(item.task.id)
                    self._slots[item.task.id] = slot
                    tg.start_soon(self._run_claimed, item, slot)
                if self._metrics is not None:
                    self._metrics.running_tasks.set(len(self._slots))
            if claimed and len(claimed) == free:
                continue
            with anyio.move_on_after(self._ralph.control_poll_seconds):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _take_over_from_dead_predecessors(self) -> None:
        """Hand back at once the tasks of this host's workers whose process is gone (killed, crashed, or the
        machine restarted), instead of waiting out their leases. Worker ids are `host:pid:nonce`; a pid that is
        alive (or reused) keeps its leases, which then expire as usual."""
        prefix = f"{self.host}:"
        try:
            owners = await self._queue.lease_owners(prefix)
            dead = [owner for owner in owners if owner != self.worker_id and not _process_alive(owner, prefix)]
            taken = await self._queue.expire_leases(dead)
        except DependencyUnavailable:
            return  # the leases expire by themselves
        if taken:
            logger.warning(
                "ralph took over tasks of a dead worker on this host", extra={"tasks": taken, "workers": len(dead)}
            )

    async def _control_loop(self) -> None:
        lease = self._ralph.lease_seconds
        last_renewal = time.monotonic()
        while True:
            await anyio.sleep(self._ralph.control_poll_seconds)
            ids = list(self._slots)
            now = time.monotonic()
            if not ids:
                last_renewal = now
                continue
            try:
                for task_id in await self._queue.stop_requests(self.worker_id, ids):
                    slot = self._slots.get(task_id)
                    if slot is not None and not slot.stop_requested:
                        slot.stop_requested = True
                        slot.interrupt()
                if now - last_renewal >= lease / 3:
                    kept = await self._queue.renew(self.worker_id, ids, lease_seconds=lease)
                    last_renewal = now
                    for task_id in set(ids) - kept:
                        self._lose(task_id)
            except Exception as exc:  # top of a background loop: log, keep polling, protect the leases
                if not isinstance(exc, DependencyUnavailable):
                    logger.exception("ralph control loop iteration crashed")
                # Unable to prove we still hold the leases: before they can expire, kill what runs, so a worker
                # that takes over never overlaps with us.
                if now - last_renewal > lease * 0.8:
                    logger.warning("ralph leases cannot be renewed; dropping tasks", extra={"tasks": len(ids)})
                    for task_id in ids:
                        self._lose(task_id)

    def _lose(self, task_id: uuid.UUID) -> None:
        slot = self._slots.get(task_id)
        if slot is not None and not slot.lease_lost:
            logger.warning("ralph lease lost", extra={"task_id": str(task_id), "worker_id": self.worker_id})
            slot.lease_lost = True
            slot.interrupt()

    # -- telemetry backpressure and events ----------------------------------------------------------------

    async def _hold_back(self) -> None:
        """Return once telemetry backpressure is off; while it is on, wait with a bounded backoff, re-checking."""
        if not await self._events.backpressure():
            self._note_backpressure(False)
            return
        self._note_backpressure(True)
        started = time.monotonic()
        delay = _HOLD_FIRST_SECONDS
        try:
            while True:
                await anyio.sleep(delay)
                if not await self._events.backpressure():
                    break
                delay = min(delay * 2, _HOLD_MAX_SECONDS)
            self._note_backpressure(False)
        finally:
            if self._metrics is not None:
                self._metrics.backpressure_wait.inc(time.monotonic() - started)

    def _note_backpressure(self, active: bool) -> None:
        """Log the start (WARNING) and the end of a backpressure episode once each, and export the state."""
        if active == self._backpressure:
            return
        self._backpressure = active
        if active:
            logger.warning("ralph workers holding back: telemetry backpressure", extra={"worker_id": self.worker_id})
        else:
            logger.info("ralph workers resuming: telemetry backpressure cleared", extra={"worker_id": self.worker_id})
        if self._metrics is not None:
            self._metrics.backpressure.set(1 if active else 0)

    def _emit_later(self, event_type: str, task: Task, fields: dict[str, Any]) -> None:
        if self._events_out is None:
            return
        try:
            self._events_out.send_nowait((event_type, task, fields))
        except anyio.WouldBlock:  # telemetry is best effort; the loop never waits for it
            logger.warning("ralph telemetry backlog full; event dropped", extra={"event_type": event_type})

    async def _send_events(self, receive: MemoryObjectReceiveStream[tuple[str, Task, dict[str, Any]]]) -> None:
        async for event_type, task, fields in receive:
            try:
                await self._events.emit(event_type, task, **fields)
            except Exception:  # top of a background loop: telemetry must never stop the workers
                logger.exception("ralph telemetry event failed")

    # -- a claimed task's lifecycle -----------------------------------------------------------------------

    async def _run_claimed(self, claimed: Claimed, slot: Slot) -> None:
        """Clean up after a dead predecessor, run the task, and hand it back if this process shuts down."""
        task = claimed.task
        try:
            for orphan in claimed.interrupted:
                if orphan.worker_host == self.host and orphan.process_group:
                    await kill_orphan_group(orphan.process_group, f"RALPH_TASK_ID={task.id}")
            resumed = claimed.previous_status.value == "running"
            await self._events.emit("task_resumed" if resumed else "task_started", task, worker_id=self.worker_id)
            await self._runner.run(task, slot)
        except anyio.get_cancelled_exc_class():
            # Shutting down: hand the task back so another worker resumes it without waiting for the lease.
            with anyio.CancelScope(shield=True), contextlib.suppress(DependencyUnavailable):
                await self._queue.release(task.id, self.worker_id)
            raise
        except DependencyUnavailable:
            logger.warning("ralph task paused: postgres unavailable", extra={"task_id": str(task.id)})
        except Exception:
            logger.exception("ralph task runner crashed", extra={"task_id": str(task.id)})
            with contextlib.suppress(DependencyUnavailable):
                await self._queue.finish_task(
                    task.id,
                    worker_id=self.worker_id,
                    reason=CompletionReason.BACKEND_UNAVAILABLE,
                    detail="internal error in the worker; see the server log",
                )
        finally:
            self._slots.pop(task.id, None)
            if self._metrics is not None:
                self._metrics.running_tasks.set(len(self._slots))
            self._wake.set()
