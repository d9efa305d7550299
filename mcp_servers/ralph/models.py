"""Ralph tool inputs and outputs (module level, so the SDK can resolve them)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mcp_servers.ralph.domain import Iteration, StoredTask, Task, TaskStatus

TaskStatusName = Literal[
    "queued", "awaiting_approval", "running", "completed", "limit_reached", "stuck", "failed", "stopped", "rejected"
]


class HookSpec(BaseModel):
    """A command run at one point of the loop; it reads the task as JSON on stdin."""

    event: Literal["pre_iteration", "post_iteration", "on_complete"] = Field(
        description="pre_iteration: before each iteration; post_iteration: after it; on_complete: when the task ends"
    )
    command: str = Field(
        min_length=1, max_length=4000, description="program and arguments, split like a shell would (no shell runs)"
    )
    blocking: bool = Field(default=False, strict=True, description="a failure of this hook ends the task as failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitTaskRequest:
    """submit_task's arguments as the tool's schema validated them, plus who submitted the task."""

    prompt: str
    backend: str
    max_iterations: int
    completion_promise: str | None
    verify_command: str | None
    max_seconds: float | None
    max_cost_usd: float | None
    workspace: str | None
    require_approval: bool
    hooks: tuple[HookSpec, ...]
    git_checkpoint: bool
    origin: str
    submitted_by: str
    # None: on when there is a verify command.
    feed_verify_output: bool | None = None
    # The caller holds ralph:exec (or is the trusted local parent): it may hand over programs of its own to run.
    may_exec: bool = False


class VerifyResult(BaseModel):
    """The verify command's result after one iteration."""

    iteration: int
    exit_status: int | None = Field(description="0 passed; null: killed at the verify timeout")
    output: str = Field(description="its output (stdout and stderr), capped at 16 KiB (head and tail)")


class TaskLimits(BaseModel):
    """The task's budget; null means unlimited."""

    max_iterations: int
    max_seconds: float | None
    max_cost_usd: float | None


class TaskView(BaseModel):
    """A task and where its loop stands."""

    id: str
    status: TaskStatusName = Field(description="completed only when the promise or verify command said so")
    completion_reason: str | None = Field(
        description="why it ended: promise_found, verify_passed, max_iterations, max_seconds, max_cost, "
        "cost_unreported, repeated_output, consecutive_failures, hook_blocked, stopped_by_user, approval_rejected, "
        "backend_unavailable, workspace_unavailable"
    )
    detail: str | None
    backend: str
    prompt: str
    workspace: str | None
    completion_promise: str | None
    verify_command: str | None
    feed_verify_output: bool = Field(description="a failed verify's output is added to the next iteration's prompt")
    last_verify: VerifyResult | None = Field(description="the latest verify command result (why the loop goes on)")
    git_checkpoint: bool
    hooks: list[HookSpec]
    limits: TaskLimits
    iterations_done: int
    cost_usd: float
    cost_known: bool = Field(description="false once a backend reported no usage")
    elapsed_seconds: float
    require_approval: bool
    approved: bool | None
    approval_note: str | None
    stop_requested: bool
    origin: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    resource_uri: str
    iterations_uri: str

    @classmethod
    def of(cls, stored: StoredTask) -> "TaskView":
        task = stored.task
        spec = task.spec
        return cls(
            id=str(task.id),
            status=task.status.value,
            completion_reason=task.completion_reason.value if task.completion_reason else None,
            detail=task.detail,
            backend=spec.backend,
            prompt=spec.prompt,
            workspace=spec.workspace,
            completion_promise=spec.completion_promise,
            verify_command=spec.verify_command,
            feed_verify_output=spec.feed_verify_output,
            last_verify=VerifyResult(
                iteration=stored.last_verify.iteration,
                exit_status=stored.last_verify.exit_status,
                output=stored.last_verify.output,
            )
            if stored.last_verify is not None
            else None,
            git_checkpoint=spec.git_checkpoint,
            hooks=[HookSpec(event=hook.event, command=hook.command, blocking=hook.blocking) for hook in spec.hooks],
            limits=TaskLimits(
                max_iterations=spec.limits.max_iterations,
                max_seconds=spec.limits.max_seconds,
                max_cost_usd=float(spec.limits.max_cost_usd) if spec.limits.max_cost_usd is not None else None,
            ),
            iterations_done=task.iterations_done,
            cost_usd=float(task.cost_usd),
            cost_known=task.cost_known,
            elapsed_seconds=round(stored.elapsed_seconds, 3),
            require_approval=spec.require_approval,
            approved=task.approved,
            approval_note=task.approval_note,
            stop_requested=task.stop_requested,
            origin=spec.origin,
            created_at=task.created_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            resource_uri=task_uri(str(task.id)),
            iterations_uri=iterations_uri(str(task.id)),
        )


class TaskSummary(BaseModel):
    """One line of list_tasks."""

    id: str
    status: TaskStatusName
    completion_reason: str | None
    backend: str
    prompt_excerpt: str
    iterations_done: int
    max_iterations: int
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, task: Task) -> "TaskSummary":
        return cls(
            id=str(task.id),
            status=task.status.value,
            completion_reason=task.completion_reason.value if task.completion_reason else None,
            backend=task.spec.backend,
            prompt_excerpt=task.spec.prompt[:200],
            iterations_done=task.iterations_done,
            max_iterations=task.spec.limits.max_iterations,
            created_at=task.created_at,
            finished_at=task.finished_at,
        )


class SubmitTaskResult(BaseModel):
    """The new task's id and where it waits."""

    task_id: str
    status: TaskStatusName
    resource_uri: str
    message: str

    @classmethod
    def of(cls, task: Task) -> "SubmitTaskResult":
        waits = "waits for approve_task" if task.status is TaskStatus.AWAITING_APPROVAL else "is queued"
        return cls(
            task_id=str(task.id),
            status=task.status.value,
            resource_uri=task_uri(str(task.id)),
            message=f"task {waits}; follow it with task_status",
        )


class TaskList(BaseModel):
    """A page of tasks, newest first."""

    tasks: list[TaskSummary]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


class IterationView(BaseModel):
    """One iteration of a task."""

    number: int
    status: Literal["running", "ok", "failed", "timeout", "interrupted", "stopped"]
    input_summary: str
    output: str | None
    exit_status: int | None
    error: str | None
    duration_seconds: float | None
    cost_usd: float | None
    tokens: int | None
    completed_task: bool
    checkpoint_commit: str | None
    hook_results: list[dict[str, object]]
    verify_exit_status: int | None = Field(description="the verify command's exit status after this iteration")
    verify_output: str | None = Field(description="its output, capped; null when no verify command ran")
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, iteration: Iteration) -> "IterationView":
        return cls(
            number=iteration.number,
            status=iteration.status.value,
            input_summary=iteration.input_summary,
            output=iteration.output,
            exit_status=iteration.exit_status,
            error=iteration.error,
            duration_seconds=iteration.duration_seconds,
            cost_usd=float(iteration.cost_usd) if iteration.cost_usd is not None else None,
            tokens=iteration.tokens,
            completed_task=iteration.completed_task,
            checkpoint_commit=iteration.checkpoint_commit,
            hook_results=iteration.hook_results,
            verify_exit_status=iteration.verify_exit_status,
            verify_output=iteration.verify_output,
            started_at=iteration.started_at,
            finished_at=iteration.finished_at,
        )


class IterationList(BaseModel):
    """Every iteration of a task, in order."""

    task_id: str
    iterations: list[IterationView]


def task_uri(task_id: str) -> str:
    return f"ralph://tasks/{task_id}"


def iterations_uri(task_id: str) -> str:
    return f"ralph://tasks/{task_id}/iterations"


class BackendView(BaseModel):
    """One backend a task may name."""

    name: str
    reports_cost: bool = Field(description="iterations report their cost, so max_cost_usd can be kept")


class BackendList(BaseModel):
    """What this server can run tasks with (the resource ralph://backends)."""

    backends: list[BackendView]
    default: str | None = Field(description="the backend to offer first: 'command' when configured, else the first")
    task_commands_allowed: bool = Field(description="verify_command and hooks are accepted (with ralph:exec)")
    workspace_roots: list[str] = Field(description="a task's workspace must lie under one of these")
