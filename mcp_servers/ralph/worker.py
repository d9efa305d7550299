"""Ralph workers: claim tasks from PostgreSQL, run their iterations, renew leases, honour stop requests.

One `WorkerPool` per process runs up to `concurrency` tasks at once. A control loop polls (every
`control_poll_seconds`, at most 0.5 s) for stop requests and renews leases; a stop cancels the running iteration,
which kills its process group. A task whose lease this worker lost (e.g. it stalled) is dropped at once, and its
running command killed, so two workers never run the same task. Workers are safe to run in many processes and
on many machines against one database.

Iterations run at most once: see `TaskStore.begin_iteration` and `TaskStore.claim`, and docs/decisions.md.

While Hybrid's learning pipeline signals telemetry backpressure, workers claim no task and start no iteration
(running iterations finish); they re-check with a backoff of up to `_HOLD_MAX_SECONDS` and resume when it clears.
"""

import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mcp_servers.ralph.backends.command import task_env
from mcp_servers.ralph.backends.port import Backend, IterationOutcome, IterationRequest, ReportsOutcomes
from mcp_servers.ralph.backends.registry import BackendRegistry
from mcp_servers.ralph.checkpoint import CheckpointError, commit_checkpoint
from mcp_servers.ralph.completion import promise_fulfilled, verify_passes
from mcp_servers.ralph.domain import REASON_STATUS, CompletionReason, HookResult, IterationStatus, Task
from mcp_servers.ralph.events import TaskEvents
from mcp_servers.ralph.hooks import blocking_failure, run_hooks
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.ralph.policy import LoopState, backoff_seconds, limit_reason, output_fingerprint, stuck_reason
from mcp_servers.ralph.process import kill_orphan_group
from mcp_servers.ralph.store import Claimed, IterationRecord, StoredTask, TaskStore
from mcp_servers.ralph.workspace import default_workspace, validate_workspace
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest

logger = logging.getLogger(__name__)

# Backoff while telemetry backpressure holds new work back: from the first delay, doubling up to the maximum.
_HOLD_FIRST_SECONDS: Final = 0.1
_HOLD_MAX_SECONDS: Final = 2.0


@dataclass(slots=True)
class _Slot:
    """One running task: flags set by the control loop and the cancel scope of what it may interrupt."""

    task_id: uuid.UUID
    stop_requested: bool = False
    lease_lost: bool = False
    _scope: anyio.CancelScope | None = field(default=None)

    @property
    def interrupted(self) -> bool:
        return self.stop_requested or self.lease_lost

    def interrupt(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[anyio.CancelScope]:
        """A scope the control loop cancels on stop or lost lease (backend runs, hooks, verify, backoff)."""
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self.interrupted:
                scope.cancel()
            try:
                yield scope
            finally:
                self._scope = None


@dataclass(frozen=True, slots=True)
class _Step:
    """What one iteration decided."""

    finished: bool  # the task ended (or was lost) during the iteration
    output: str | None = None
    stored: StoredTask | None = None  # the task as recorded after the iteration (saves a refresh)


class WorkerPool:
    """Runs tasks from the shared queue in this process. Owns nothing it is given."""

    def __init__(
        self,
        *,
        store: TaskStore,
        backends: BackendRegistry,
        settings: StackSettings,
        events: TaskEvents,
        concurrency: int | None = None,
        worker_id: str | None = None,
        metrics: RalphMetrics | None = None,
    ) -> None:
        self._store = store
        self._backends = backends
        self._settings = settings
        self._ralph = settings.ralph
        self._events = events
        self._metrics = metrics
        self.concurrency = settings.ralph.workers if concurrency is None else concurrency
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots: dict[uuid.UUID, _Slot] = {}
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
                    claimed = await self._store.claim(
                        self.worker_id, limit=free, lease_seconds=self._ralph.lease_seconds
                    )
                except DependencyUnavailable:
                    logger.warning("ralph claim failed; retrying", extra={"worker_id": self.worker_id})
                except Exception:  # top of a background loop: log and keep claiming
                    logger.exception("ralph claim crashed; retrying")
                for item in claimed:
                    slot = _Slot(item.task.id)
                    self._slots[item.task.id] = slot
                    tg.start_soon(self._run_claimed, item, slot)
                if self._metrics is not None:
                    self._metrics.running_tasks.set(len(self._slots))
            if claimed and len(claimed) == free:
                continue
            with anyio.move_on_after(self._ralph.control_poll_seconds):
                await self._wake.wait()
            self._wake = anyio.Event()

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
                for task_id in await self._store.stop_requests(self.worker_id, ids):
                    slot = self._slots.get(task_id)
                    if slot is not None and not slot.stop_requested:
                        slot.stop_requested = True
                        slot.interrupt()
                if now - last_renewal >= lease / 3:
                    kept = await self._store.renew(self.worker_id, ids, lease_seconds=lease)
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

    def _emit_later(self, event_type: str, task: Task, **fields: Any) -> None:
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

    def _lose(self, task_id: uuid.UUID) -> None:
        slot = self._slots.get(task_id)
        if slot is not None and not slot.lease_lost:
            logger.warning("ralph lease lost", extra={"task_id": str(task_id), "worker_id": self.worker_id})
            slot.lease_lost = True
            slot.interrupt()

    # -- running one task ---------------------------------------------------------------------------------

    async def _run_claimed(self, claimed: Claimed, slot: _Slot) -> None:
        task = claimed.task
        try:
            for orphan in claimed.interrupted:
                if orphan.worker_host == self.host and orphan.process_group:
                    await kill_orphan_group(orphan.process_group, f"RALPH_TASK_ID={task.id}")
            resumed = claimed.previous_status.value == "running"
            await self._events.emit("task_resumed" if resumed else "task_started", task, worker_id=self.worker_id)
            await self._drive(task, slot)
        except anyio.get_cancelled_exc_class():
            # Shutting down: hand the task back so another worker resumes it without waiting for the lease.
            with anyio.CancelScope(shield=True), contextlib.suppress(DependencyUnavailable):
                await self._store.release(task.id, self.worker_id)
            raise
        except DependencyUnavailable:
            logger.warning("ralph task paused: postgres unavailable", extra={"task_id": str(task.id)})
        except Exception:
            logger.exception("ralph task runner crashed", extra={"task_id": str(task.id)})
            with contextlib.suppress(DependencyUnavailable):
                await self._store.finish_task(
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

    async def _workspace(self, task: Task) -> Path:
        if task.spec.workspace is None:
            return await default_workspace(self._settings.data_dir, str(task.id))
        return await validate_workspace(task.spec.workspace, self._ralph.workspace_roots)

    async def _drive(self, task: Task, slot: _Slot) -> None:
        try:
            backend = self._backends.get(task.spec.backend)
        except InvalidRequest as exc:  # the deployment no longer offers it
            await self._finish(task, CompletionReason.BACKEND_UNAVAILABLE, str(exc), None, None)
            return
        try:
            workspace = await self._workspace(task)
        except InvalidRequest as exc:  # deleted, or the roots changed since submission
            await self._finish(task, CompletionReason.WORKSPACE_UNAVAILABLE, str(exc), None, None)
            return
        previous_output = await self._store.last_output(task.id)
        last_iteration: int | None = None
        known: StoredTask | None = None
        while True:
            stored = known or await self._store.refresh(task.id, self.worker_id)
            known = None
            if stored is None or slot.lease_lost:
                return
            task = stored.task
            if task.stop_requested or slot.stop_requested:
                await self._finish(
                    task, CompletionReason.STOPPED_BY_USER, "stopped by request", workspace, last_iteration
                )
                return
            limits = task.spec.limits
            reason = limit_reason(
                limits,
                iterations_done=task.iterations_done,
                elapsed_seconds=stored.elapsed_seconds,
                cost_usd=task.cost_usd,
                cost_known=task.cost_known,
            )
            if reason is not None:
                await self._finish(task, reason, _limit_detail(reason, task), workspace, last_iteration)
                return
            if stored.wait_seconds > 0:
                with slot.interruptible():
                    await anyio.sleep(stored.wait_seconds)
                continue
            if await self._events.backpressure():
                with slot.interruptible():
                    await self._hold_back()
                continue  # look at stop requests, limits and the lease again before starting
            number = await self._store.begin_iteration(
                task.id, worker_id=self.worker_id, worker_host=self.host, input_summary=""
            )
            if number is None:
                continue  # stop requested or lease lost meanwhile: the next refresh decides
            last_iteration = number
            step = await self._iteration(stored, number, backend, workspace, slot, previous_output)
            if step.finished:
                return
            known = step.stored
            if step.output is not None:
                previous_output = step.output

    async def _iteration(
        self,
        stored: StoredTask,
        number: int,
        backend: Backend,
        workspace: Path,
        slot: _Slot,
        previous_output: str | None,
    ) -> _Step:
        task = stored.task
        spec = task.spec
        ralph = self._ralph
        timeout = ralph.iteration_timeout_seconds
        if spec.limits.max_seconds is not None:
            timeout = max(0.1, min(timeout, spec.limits.max_seconds - stored.elapsed_seconds))
        request = IterationRequest(
            task=task,
            number=number,
            workspace=workspace,
            previous_output=previous_output,
            timeout_seconds=timeout,
            on_process_start=lambda group: self._store.set_process_group(task.id, number, group),
        )
        env = task_env(ralph, request)
        hook_args: dict[str, Any] = {
            "workspace": workspace,
            "env": env,
            "timeout_seconds": ralph.hook_timeout_seconds,
            "kill_grace_seconds": ralph.kill_grace_seconds,
        }
        hook_results: list[HookResult] = []
        outcome: IterationOutcome | None = None
        completed: CompletionReason | None = None
        started = time.perf_counter()
        with slot.interruptible():
            pre = await run_hooks(spec.hooks, "pre_iteration", task=task, iteration={"number": number}, **hook_args)
            hook_results += pre
            if blocking_failure(pre) is None:
                outcome = await backend.run(request)
                completed = await self._completion(task, outcome, workspace, env)
                post = await run_hooks(
                    spec.hooks,
                    "post_iteration",
                    task=task,
                    iteration=_iteration_json(number, outcome, completed),
                    **hook_args,
                )
                hook_results += post
        duration = time.perf_counter() - started
        if slot.lease_lost:
            return _Step(finished=True)
        blocked = blocking_failure(hook_results)
        if slot.stop_requested:
            status = IterationStatus.STOPPED
        elif outcome is None:
            status = IterationStatus.FAILED
        elif outcome.timed_out:
            status = IterationStatus.TIMEOUT
        else:
            status = IterationStatus.OK if outcome.succeeded else IterationStatus.FAILED
        checkpoint, checkpoint_error = None, None
        if spec.git_checkpoint and not slot.stop_requested:
            try:
                checkpoint = await commit_checkpoint(
                    workspace, env, f"ralph: task {task.id} iteration {number} ({status.value})"
                )
            except CheckpointError as exc:
                checkpoint_error = f"git checkpoint failed: {exc}"
        output = outcome.output if outcome is not None else ""
        error = outcome.error if outcome is not None else None
        if slot.stop_requested:
            error = "stopped by request"
        elif blocked is not None and outcome is None:
            error = f"blocking pre_iteration hook failed: {blocked.command}"
        error = "; ".join(part for part in (error, checkpoint_error) if part) or None
        succeeded = status is IterationStatus.OK
        state = LoopState(task.consecutive_failures, task.repeat_count, task.last_output_sha256).after(
            succeeded=succeeded, fingerprint=output_fingerprint(output) if output.strip() else None
        )
        record = IterationRecord(
            status=status,
            input_summary=outcome.input_summary if outcome is not None else "pre_iteration hook blocked",
            output=output,
            output_sha256=state.last_output_sha256,
            exit_status=outcome.exit_status if outcome is not None else None,
            error=error,
            duration_seconds=duration,
            cost_usd=outcome.cost_usd if outcome is not None else None,
            tokens=outcome.tokens if outcome is not None else None,
            completed_task=completed is not None,
            checkpoint_commit=checkpoint,
            hook_results=tuple(hook_results),
        )
        backoff = (
            0.0
            if succeeded
            else backoff_seconds(
                state.consecutive_failures, base=ralph.backoff_base_seconds, cap=ralph.backoff_max_seconds
            )
        )
        if slot.stop_requested:
            backoff = 0.0
        recorded = await self._store.finish_iteration(
            task.id, number, worker_id=self.worker_id, record=record, state=state, backoff_seconds=backoff
        )
        if recorded is None:
            return _Step(finished=True)
        if self._metrics is not None:
            self._metrics.iterations.labels(status.value).inc()
            self._metrics.iteration_duration.observe(duration)
        if outcome is not None and isinstance(backend, ReportsOutcomes):
            await backend.report_outcome(outcome, completed=completed is not None)
        self._emit_later(
            "iteration_finished",
            recorded.task,
            iteration=number,
            iteration_status=status.value,
            duration_seconds=round(duration, 4),
            output_chars=len(output),
            iteration_cost_usd=float(record.cost_usd) if record.cost_usd is not None else None,
            tokens=record.tokens,
        )
        if slot.stop_requested:
            await self._finish(task, CompletionReason.STOPPED_BY_USER, "stopped by request", workspace, number)
            return _Step(finished=True)
        if completed is not None:
            await self._finish(task, completed, f"completed in iteration {number}", workspace, number)
            return _Step(finished=True)
        if blocked is not None:
            detail = f"blocking {blocked.event} hook failed: {blocked.command}"
            await self._finish(task, CompletionReason.HOOK_BLOCKED, detail, workspace, number)
            return _Step(finished=True)
        stuck = stuck_reason(
            state, repeat_threshold=ralph.stuck_repeat_threshold, max_failures=ralph.max_consecutive_failures
        )
        if stuck is not None:
            await self._finish(task, stuck, _stuck_detail(stuck, state), workspace, number)
            return _Step(finished=True)
        return _Step(finished=False, output=output, stored=recorded)

    async def _completion(
        self, task: Task, outcome: IterationOutcome, workspace: Path, env: dict[str, str]
    ) -> CompletionReason | None:
        spec = task.spec
        # Only an iteration that ran to a clean end may claim completion (not a crash that echoed its prompt).
        if spec.completion_promise and outcome.succeeded and promise_fulfilled(outcome.output, spec.completion_promise):
            return CompletionReason.PROMISE_FOUND
        if spec.verify_command:
            result = await verify_passes(
                spec.verify_command,
                workspace=workspace,
                env=env,
                timeout_seconds=self._ralph.verify_timeout_seconds,
                max_output_bytes=16 * 1024,
                kill_grace_seconds=self._ralph.kill_grace_seconds,
            )
            if result.ok:
                return CompletionReason.VERIFY_PASSED
        return None

    async def _finish(
        self,
        task: Task,
        reason: CompletionReason,
        detail: str | None,
        workspace: Path | None,
        last_iteration: int | None,
    ) -> None:
        """End the task; on_complete hooks run first (seeing the final status) so clients that see the task
        ended also see their results."""
        if workspace is not None and any(hook.event == "on_complete" for hook in task.spec.hooks):
            current = await self._store.refresh(task.id, self.worker_id)
            if current is None:
                return
            ending = dataclasses.replace(
                current.task, status=REASON_STATUS[reason], completion_reason=reason, detail=detail
            )
            results = await run_hooks(
                ending.spec.hooks,
                "on_complete",
                task=ending,
                iteration=None,
                workspace=workspace,
                env=task_env(
                    self._ralph,
                    IterationRequest(ending, last_iteration or 0, workspace, None, self._ralph.hook_timeout_seconds),
                ),
                timeout_seconds=self._ralph.hook_timeout_seconds,
                kill_grace_seconds=self._ralph.kill_grace_seconds,
            )
            if last_iteration is not None:
                await self._store.add_hook_results(task.id, last_iteration, results)
        final = await self._store.finish_task(task.id, worker_id=self.worker_id, reason=reason, detail=detail)
        if final is None:
            return
        logger.info(
            "ralph task finished",
            extra={"task_id": str(task.id), "status": final.status.value, "reason": reason.value},
        )
        if self._metrics is not None:
            self._metrics.tasks_finished.labels(final.status.value).inc()
        await self._events.emit("task_finished", final, detail=detail)


def _iteration_json(number: int, outcome: IterationOutcome, completed: CompletionReason | None) -> dict[str, Any]:
    return {
        "number": number,
        "succeeded": outcome.succeeded,
        "exit_status": outcome.exit_status,
        "timed_out": outcome.timed_out,
        "output": outcome.output[-4000:],
        "completed": completed.value if completed else None,
    }


def _limit_detail(reason: CompletionReason, task: Task) -> str:
    limits = task.spec.limits
    if reason is CompletionReason.MAX_ITERATIONS:
        return f"ran {task.iterations_done} of {limits.max_iterations} iterations without completing"
    if reason is CompletionReason.MAX_SECONDS:
        return f"time limit of {limits.max_seconds:g} s reached"
    if reason is CompletionReason.MAX_COST:
        return f"cost {task.cost_usd} USD reached the cap of {limits.max_cost_usd} USD"
    return "a backend reported no usage while a cost cap is set; stopped to keep the cap (fail closed)"


def _stuck_detail(reason: CompletionReason, state: LoopState) -> str:
    if reason is CompletionReason.REPEATED_OUTPUT:
        return f"the same output {state.repeat_count} times in a row"
    return f"{state.consecutive_failures} failed iterations in a row"
