"""Running one claimed task: its iterations, one after another, until a completion condition, a limit or a stop.

An iteration is: run the pre_iteration hooks, the backend and the completion checks, then the post_iteration hooks
(all interruptible by a stop or a lost lease); decide its status; commit a git checkpoint; record it in the queue
with the loop state after it; report it; and decide whether the task ends. The worker pool (`pool.py`) claims
tasks, renews their leases and flags stops on the task's `Slot`.

Iterations run at most once: see `TaskQueue.begin_iteration` and `TaskQueue.claim`, and docs/decisions.md.
"""

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from mcp_servers.ralph.backends.command import task_env, template_name
from mcp_servers.ralph.backends.port import Backend, IterationOutcome, IterationRequest, ReportsOutcomes
from mcp_servers.ralph.backends.registry import BackendRegistry
from mcp_servers.ralph.checkpoint import CheckpointError, commit_checkpoint
from mcp_servers.ralph.completion import VERIFY_OUTPUT_BYTES, promise_fulfilled, verify_feedback, verify_passes
from mcp_servers.ralph.domain import (
    REASON_STATUS,
    CompletionReason,
    HookResult,
    IterationStatus,
    StoredTask,
    Task,
    VerifyRun,
)
from mcp_servers.ralph.events import TaskEvents
from mcp_servers.ralph.hooks import blocking_failure, run_hooks
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.ralph.policy import LoopState, backoff_seconds, limit_reason, output_fingerprint, stuck_reason
from mcp_servers.ralph.queue import IterationRecord, TaskQueue
from mcp_servers.ralph.sandbox import Sandbox, SandboxUnavailable
from mcp_servers.ralph.workspace import default_workspace, validate_workspace
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.observability.tracing import root_span

logger = logging.getLogger(__name__)

# Queues a telemetry event off the loop's critical path: (event type, task, fields).
EmitLater = Callable[[str, Task, dict[str, Any]], None]


@dataclass(slots=True)
class Slot:
    """One running task: flags the pool's control loop sets and the cancel scope of what it may interrupt."""

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


@dataclass(slots=True)
class _Run:
    """What stays the same for all iterations of one task, and what carries from one to the next."""

    slot: Slot
    backend: Backend
    workspace: Path
    previous_output: str | None
    last_iteration: int | None = None
    # The latest verify command result (from the database when the task resumes on another worker).
    last_verify: VerifyRun | None = None


@dataclass(frozen=True, slots=True)
class _Executed:
    """What ran in the interruptible part of an iteration; no outcome when a blocking hook or a stop came first."""

    outcome: IterationOutcome | None
    completed: CompletionReason | None
    hook_results: tuple[HookResult, ...]
    duration_seconds: float
    verify: VerifyRun | None = None


@dataclass(frozen=True, slots=True)
class _Step:
    """What one iteration decided."""

    finished: bool  # the task ended (or was lost) during the iteration
    output: str | None = None
    stored: StoredTask | None = None  # the task as recorded after the iteration (saves a refresh)
    verify: VerifyRun | None = None


class TaskRunner:
    """Runs claimed tasks of one worker to their end. Holds no per-task state; owns nothing it is given.

    Args:
        hold_back: returns once telemetry backpressure is off (the pool's wait, shared with claiming).
        emit_later: queues an iteration event for telemetry without waiting for it.
    """

    def __init__(
        self,
        *,
        queue: TaskQueue,
        backends: BackendRegistry,
        settings: StackSettings,
        events: TaskEvents,
        worker_id: str,
        host: str,
        hold_back: Callable[[], Awaitable[None]],
        emit_later: EmitLater,
        sandbox: Sandbox,
        metrics: RalphMetrics | None = None,
    ) -> None:
        self._queue = queue
        self._sandbox = sandbox
        self._backends = backends
        self._settings = settings
        self._ralph = settings.ralph
        self._events = events
        self._worker_id = worker_id
        self._host = host
        self._hold_back = hold_back
        self._emit_later = emit_later
        self._metrics = metrics

    async def run(self, task: Task, slot: Slot) -> None:
        """Run iterations until the task ends, or return as soon as this worker no longer holds it."""
        run = await self._prepare(task, slot)
        if run is None:
            return
        known: StoredTask | None = None
        while True:
            stored = known or await self._queue.refresh(task.id, self._worker_id)
            known = None
            if stored is None or slot.lease_lost:
                return
            if await self._ended_before_iteration(run, stored):
                return
            if stored.wait_seconds > 0:  # backing off after a failure
                with slot.interruptible():
                    await anyio.sleep(stored.wait_seconds)
                continue
            if await self._events.backpressure():
                with slot.interruptible():
                    await self._hold_back()
                continue  # look at stop requests, limits and the lease again before starting
            number = await self._queue.begin_iteration(
                task.id, worker_id=self._worker_id, worker_host=self._host, input_summary=""
            )
            if number is None:
                continue  # stop requested or lease lost meanwhile: the next refresh decides
            run.last_iteration = number
            # One trace per iteration: the backend's peer calls (Hybrid, AIDB) carry it on as W3C traceparent.
            with root_span(
                "ralph.iteration",
                {"ralph.task.id": str(task.id), "ralph.iteration.number": number, "ralph.backend": run.backend.name},
            ):
                step = await self._iteration(run, stored, number)
            if step.finished:
                return
            known = step.stored
            if step.output is not None:
                run.previous_output = step.output
            if step.verify is not None:
                run.last_verify = step.verify

    async def _prepare(self, task: Task, slot: Slot) -> _Run | None:
        """The task's backend and workspace, or None after ending the task because one is unavailable."""
        try:
            backend = self._backends.get(task.spec.backend)
        except InvalidRequest as exc:  # the deployment no longer offers it
            await self._finish(task, CompletionReason.BACKEND_UNAVAILABLE, str(exc), None, None)
            return None
        try:
            workspace = await self._workspace(task)
        except InvalidRequest as exc:  # deleted, or the roots changed since submission
            await self._finish(task, CompletionReason.WORKSPACE_UNAVAILABLE, str(exc), None, None)
            return None
        if _runs_commands(task):
            try:
                await self._sandbox.ensure_available()
            except SandboxUnavailable as exc:  # e.g. bubblewrap removed since submission: never run unconfined
                await self._finish(task, CompletionReason.BACKEND_UNAVAILABLE, str(exc), None, None)
                return None
            await self._sandbox.prepare_workspace(workspace)
        current = await self._queue.refresh(task.id, self._worker_id)
        return _Run(
            slot,
            backend,
            workspace,
            previous_output=await self._queue.last_output(task.id),
            last_verify=current.last_verify if current is not None else None,
        )

    async def _workspace(self, task: Task) -> Path:
        if task.spec.workspace is None:
            return await default_workspace(self._settings.data_dir, str(task.id))
        return await validate_workspace(task.spec.workspace, self._ralph.workspace_roots)

    async def _ended_before_iteration(self, run: _Run, stored: StoredTask) -> bool:
        """End the task if a stop was requested or a limit is reached before the next iteration starts."""
        task = stored.task
        if task.stop_requested or run.slot.stop_requested:
            await self._finish(
                task, CompletionReason.STOPPED_BY_USER, "stopped by request", run.workspace, run.last_iteration
            )
            return True
        reason = limit_reason(
            task.spec.limits,
            iterations_done=task.iterations_done,
            elapsed_seconds=stored.elapsed_seconds,
            cost_usd=task.cost_usd,
            cost_known=task.cost_known,
        )
        if reason is None:
            return False
        await self._finish(task, reason, _limit_detail(reason, task), run.workspace, run.last_iteration)
        return True

    # -- one iteration ------------------------------------------------------------------------------------

    async def _iteration(self, run: _Run, stored: StoredTask, number: int) -> _Step:
        task = stored.task
        request = self._request(run, stored, number)
        env = task_env(self._ralph, request)
        executed = await self._execute(run, request, env)
        if run.slot.lease_lost:
            return _Step(finished=True)  # the new holder settles the iteration; write nothing more
        status = _iteration_status(run.slot, executed.outcome)
        checkpoint, checkpoint_error = await self._checkpoint(run, task, number, status, env)
        record, state = _record(task, run.slot, executed, status, checkpoint, checkpoint_error)
        recorded = await self._queue.finish_iteration(
            task.id,
            number,
            worker_id=self._worker_id,
            record=record,
            state=state,
            backoff_seconds=self._backoff(run.slot, record, state),
        )
        if recorded is None:
            return _Step(finished=True)
        await self._report(run, number, executed, record, recorded)
        ending = self._ending(run.slot, executed, number, state)
        if ending is not None:
            reason, detail = ending
            await self._finish(task, reason, detail, run.workspace, number)
            return _Step(finished=True)
        return _Step(finished=False, output=record.output, stored=recorded, verify=executed.verify)

    def _request(self, run: _Run, stored: StoredTask, number: int) -> IterationRequest:
        """The backend's request; its timeout never runs past the task's own time limit."""
        task = stored.task
        timeout = self._ralph.iteration_timeout_seconds
        if task.spec.limits.max_seconds is not None:
            timeout = max(0.1, min(timeout, task.spec.limits.max_seconds - stored.elapsed_seconds))
        feedback = None
        if task.spec.feed_verify_output and task.spec.verify_command and run.last_verify is not None:
            feedback = verify_feedback(task.spec.verify_command, run.last_verify)
        return IterationRequest(
            task=task,
            number=number,
            workspace=run.workspace,
            previous_output=run.previous_output,
            timeout_seconds=timeout,
            on_process_start=lambda group: self._queue.set_process_group(task.id, number, group),
            feedback=feedback,
        )

    async def _execute(self, run: _Run, request: IterationRequest, env: dict[str, str]) -> _Executed:
        """Hooks, backend and completion checks, interruptible as one by a stop or a lost lease."""
        task, hooks = request.task, request.task.spec.hooks
        hook_args: dict[str, Any] = {
            "workspace": run.workspace,
            "env": env,
            "sandbox": self._sandbox,
            "timeout_seconds": self._ralph.hook_timeout_seconds,
            "kill_grace_seconds": self._ralph.kill_grace_seconds,
        }
        hook_results: list[HookResult] = []
        outcome: IterationOutcome | None = None
        completed: CompletionReason | None = None
        verify: VerifyRun | None = None
        started = time.perf_counter()
        with run.slot.interruptible():
            pre = await run_hooks(hooks, "pre_iteration", task=task, iteration={"number": request.number}, **hook_args)
            hook_results += pre
            if blocking_failure(pre) is None:
                outcome = await run.backend.run(request)
                completed, verify = await self._completion(request, outcome, run.workspace, env)
                iteration = _iteration_json(request.number, outcome, completed)
                hook_results += await run_hooks(hooks, "post_iteration", task=task, iteration=iteration, **hook_args)
        return _Executed(outcome, completed, tuple(hook_results), time.perf_counter() - started, verify)

    async def _completion(
        self, request: IterationRequest, outcome: IterationOutcome, workspace: Path, env: dict[str, str]
    ) -> tuple[CompletionReason | None, VerifyRun | None]:
        """Whether the iteration completed the task, and the verify command's result when one ran."""
        spec = request.task.spec
        # Only an iteration that ran to a clean end may claim completion (not a crash that echoed its prompt).
        if spec.completion_promise and outcome.succeeded and promise_fulfilled(outcome.output, spec.completion_promise):
            return CompletionReason.PROMISE_FOUND, None
        if not spec.verify_command:
            return None, None
        result = await verify_passes(
            spec.verify_command,
            workspace=workspace,
            env=env,
            sandbox=self._sandbox,
            timeout_seconds=self._ralph.verify_timeout_seconds,
            max_output_bytes=VERIFY_OUTPUT_BYTES,
            kill_grace_seconds=self._ralph.kill_grace_seconds,
        )
        verify = VerifyRun(request.number, None if result.timed_out else result.exit_status, result.output)
        return (CompletionReason.VERIFY_PASSED if result.ok else None), verify

    async def _checkpoint(
        self, run: _Run, task: Task, number: int, status: IterationStatus, env: dict[str, str]
    ) -> tuple[str | None, str | None]:
        """Commit the workspace if the task asks for it: (commit, None), or (None, why it failed)."""
        if not task.spec.git_checkpoint or run.slot.stop_requested:
            return None, None
        try:
            message = f"ralph: task {task.id} iteration {number} ({status.value})"
            return await commit_checkpoint(run.workspace, env, self._sandbox, message), None
        except CheckpointError as exc:
            return None, f"git checkpoint failed: {exc}"

    def _backoff(self, slot: Slot, record: IterationRecord, state: LoopState) -> float:
        """Seconds before the next iteration may start: none after a success or a stop, else exponential."""
        if record.status is IterationStatus.OK or slot.stop_requested:
            return 0.0
        return backoff_seconds(
            state.consecutive_failures, base=self._ralph.backoff_base_seconds, cap=self._ralph.backoff_max_seconds
        )

    async def _report(
        self, run: _Run, number: int, executed: _Executed, record: IterationRecord, recorded: StoredTask
    ) -> None:
        """Metrics, the backend's outcome feedback and the telemetry event of a recorded iteration."""
        if self._metrics is not None:
            self._metrics.iterations.labels(record.status.value).inc()
            self._metrics.iteration_duration.observe(record.duration_seconds)
        if executed.outcome is not None and isinstance(run.backend, ReportsOutcomes):
            await run.backend.report_outcome(executed.outcome, completed=executed.completed is not None)
        self._emit_later(
            "iteration_finished",
            recorded.task,
            {
                "iteration": number,
                "iteration_status": record.status.value,
                "duration_seconds": round(record.duration_seconds, 4),
                "output_chars": len(record.output),
                "iteration_cost_usd": float(record.cost_usd) if record.cost_usd is not None else None,
                "tokens": record.tokens,
            },
        )

    def _ending(
        self, slot: Slot, executed: _Executed, number: int, state: LoopState
    ) -> tuple[CompletionReason, str] | None:
        """Why the task ends after this iteration, if it does: a stop, completion, a blocking hook, or stuck."""
        if slot.stop_requested:
            return CompletionReason.STOPPED_BY_USER, "stopped by request"
        if executed.completed is not None:
            return executed.completed, f"completed in iteration {number}"
        outcome = executed.outcome
        if outcome is not None and outcome.unavailable is not None and outcome.configured_off:
            return CompletionReason.BACKEND_UNAVAILABLE, outcome.unavailable
        blocked = blocking_failure(executed.hook_results)
        if blocked is not None:
            return CompletionReason.HOOK_BLOCKED, f"blocking {blocked.event} hook failed: {blocked.command}"
        stuck = stuck_reason(
            state,
            repeat_threshold=self._ralph.stuck_repeat_threshold,
            max_failures=self._ralph.max_consecutive_failures,
        )
        if stuck is CompletionReason.CONSECUTIVE_FAILURES and outcome is not None and outcome.unavailable:
            # Every retry (with backoff) found the backend unreachable: say so rather than blame the agent.
            detail = f"backend unreachable for {state.consecutive_failures} iterations in a row: {outcome.unavailable}"
            return CompletionReason.BACKEND_UNAVAILABLE, detail
        if stuck is not None:
            return stuck, _stuck_detail(stuck, state)
        return None

    # -- the end of a task --------------------------------------------------------------------------------

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
            current = await self._queue.refresh(task.id, self._worker_id)
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
                sandbox=self._sandbox,
                timeout_seconds=self._ralph.hook_timeout_seconds,
                kill_grace_seconds=self._ralph.kill_grace_seconds,
            )
            if last_iteration is not None:
                await self._queue.add_hook_results(task.id, last_iteration, results)
        final = await self._queue.finish_task(task.id, worker_id=self._worker_id, reason=reason, detail=detail)
        if final is None:
            return
        logger.info(
            "ralph task finished",
            extra={"task_id": str(task.id), "status": final.status.value, "reason": reason.value},
        )
        if self._metrics is not None:
            self._metrics.tasks_finished.labels(final.status.value).inc()
        await self._events.emit("task_finished", final, detail=detail)


def _runs_commands(task: Task) -> bool:
    """Whether the task runs anything on this host (an agent template, hooks, a verify command or git)."""
    spec = task.spec
    return bool(template_name(spec.backend) or spec.hooks or spec.verify_command or spec.git_checkpoint)


def _iteration_status(slot: Slot, outcome: IterationOutcome | None) -> IterationStatus:
    if slot.stop_requested:
        return IterationStatus.STOPPED
    if outcome is None:
        return IterationStatus.FAILED
    if outcome.timed_out:
        return IterationStatus.TIMEOUT
    return IterationStatus.OK if outcome.succeeded else IterationStatus.FAILED


def _record(
    task: Task,
    slot: Slot,
    executed: _Executed,
    status: IterationStatus,
    checkpoint: str | None,
    checkpoint_error: str | None,
) -> tuple[IterationRecord, LoopState]:
    """The iteration as the queue records it, and the loop state (failures, repeats) after it."""
    outcome = executed.outcome
    output = outcome.output if outcome is not None else ""
    error = outcome.error if outcome is not None else None
    blocked = blocking_failure(executed.hook_results)
    if slot.stop_requested:
        error = "stopped by request"
    elif blocked is not None and outcome is None:
        error = f"blocking pre_iteration hook failed: {blocked.command}"
    error = "; ".join(part for part in (error, checkpoint_error) if part) or None
    state = LoopState(task.consecutive_failures, task.repeat_count, task.last_output_sha256).after(
        succeeded=status is IterationStatus.OK, fingerprint=output_fingerprint(output) if output.strip() else None
    )
    record = IterationRecord(
        status=status,
        input_summary=outcome.input_summary if outcome is not None else "pre_iteration hook blocked",
        output=output,
        output_sha256=state.last_output_sha256,
        exit_status=outcome.exit_status if outcome is not None else None,
        error=error,
        duration_seconds=executed.duration_seconds,
        cost_usd=outcome.cost_usd if outcome is not None else None,
        tokens=outcome.tokens if outcome is not None else None,
        completed_task=executed.completed is not None,
        checkpoint_commit=checkpoint,
        hook_results=executed.hook_results,
        verify=executed.verify,
    )
    return record, state


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
