"""Ralph's domain values: task states, completion reasons, hooks, and the task and iteration records."""

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal, NewType

TaskId = NewType("TaskId", uuid.UUID)


class TaskStatus(enum.StrEnum):
    """Where a task is in its life; the last five are terminal."""

    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    COMPLETED = "completed"
    LIMIT_REACHED = "limit_reached"
    STUCK = "stuck"
    FAILED = "failed"
    STOPPED = "stopped"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self not in (TaskStatus.QUEUED, TaskStatus.AWAITING_APPROVAL, TaskStatus.RUNNING)


class CompletionReason(enum.StrEnum):
    """Why a task ended; `completed` is only ever paired with the first two."""

    PROMISE_FOUND = "promise_found"
    VERIFY_PASSED = "verify_passed"
    MAX_ITERATIONS = "max_iterations"
    MAX_SECONDS = "max_seconds"
    MAX_COST = "max_cost"
    COST_UNREPORTED = "cost_unreported"
    REPEATED_OUTPUT = "repeated_output"
    CONSECUTIVE_FAILURES = "consecutive_failures"
    HOOK_BLOCKED = "hook_blocked"
    STOPPED_BY_USER = "stopped_by_user"
    APPROVAL_REJECTED = "approval_rejected"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    WORKSPACE_UNAVAILABLE = "workspace_unavailable"


# The status each reason ends a task with; one table so no code path pairs a limit with `completed`.
REASON_STATUS: dict[CompletionReason, TaskStatus] = {
    CompletionReason.PROMISE_FOUND: TaskStatus.COMPLETED,
    CompletionReason.VERIFY_PASSED: TaskStatus.COMPLETED,
    CompletionReason.MAX_ITERATIONS: TaskStatus.LIMIT_REACHED,
    CompletionReason.MAX_SECONDS: TaskStatus.LIMIT_REACHED,
    CompletionReason.MAX_COST: TaskStatus.LIMIT_REACHED,
    CompletionReason.COST_UNREPORTED: TaskStatus.LIMIT_REACHED,
    CompletionReason.REPEATED_OUTPUT: TaskStatus.STUCK,
    CompletionReason.CONSECUTIVE_FAILURES: TaskStatus.FAILED,
    CompletionReason.HOOK_BLOCKED: TaskStatus.FAILED,
    CompletionReason.STOPPED_BY_USER: TaskStatus.STOPPED,
    CompletionReason.APPROVAL_REJECTED: TaskStatus.REJECTED,
    CompletionReason.BACKEND_UNAVAILABLE: TaskStatus.FAILED,
    CompletionReason.WORKSPACE_UNAVAILABLE: TaskStatus.FAILED,
}


class IterationStatus(enum.StrEnum):
    """Outcome of one iteration; `interrupted` marks one whose worker died before recording a result."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"


HookEvent = Literal["pre_iteration", "post_iteration", "on_complete"]


@dataclass(frozen=True, slots=True)
class Hook:
    """A command run at one point of the loop, with the task as JSON on stdin."""

    event: HookEvent
    command: str
    blocking: bool = False


@dataclass(frozen=True, slots=True)
class HookResult:
    """What a hook did: its exit status (None when it could not start or timed out) and an output excerpt."""

    event: HookEvent
    command: str
    exit_status: int | None
    ok: bool
    blocking: bool
    output: str

    def as_json(self) -> dict[str, object]:
        return {
            "event": self.event,
            "command": self.command,
            "exit_status": self.exit_status,
            "ok": self.ok,
            "blocking": self.blocking,
            "output": self.output,
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """The budget of one task; None means unlimited."""

    max_iterations: int
    max_seconds: float | None = None
    max_cost_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a caller submits, already validated."""

    prompt: str
    backend: str
    limits: Limits
    completion_promise: str | None = None
    verify_command: str | None = None
    workspace: str | None = None
    git_checkpoint: bool = False
    hooks: tuple[Hook, ...] = ()
    require_approval: bool = False
    origin: str = "user"
    submitted_by: str | None = None
    # The next iteration's prompt carries the previous iteration's verify output (when it failed).
    feed_verify_output: bool = False


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored: its spec plus the loop's durable state."""

    id: TaskId
    spec: TaskSpec
    status: TaskStatus
    completion_reason: CompletionReason | None
    detail: str | None
    stop_requested: bool
    next_iteration: int
    consecutive_failures: int
    repeat_count: int
    last_output_sha256: str | None
    cost_usd: Decimal
    cost_known: bool
    approved: bool | None
    approval_note: str | None
    approved_by: str | None
    lease_owner: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    not_before: datetime

    @property
    def iterations_done(self) -> int:
        return self.next_iteration - 1

    def as_json(self) -> dict[str, object]:
        """The task as hooks see it on stdin (no lease internals)."""
        return {
            "id": str(self.id),
            "prompt": self.spec.prompt,
            "backend": self.spec.backend,
            "status": self.status.value,
            "completion_reason": self.completion_reason.value if self.completion_reason else None,
            "detail": self.detail,
            "workspace": self.spec.workspace,
            "completion_promise": self.spec.completion_promise,
            "verify_command": self.spec.verify_command,
            "iterations_done": self.iterations_done,
            "max_iterations": self.spec.limits.max_iterations,
            "cost_usd": float(self.cost_usd),
            "cost_known": self.cost_known,
        }


@dataclass(frozen=True, slots=True)
class VerifyRun:
    """The verify command's result after one iteration: exit status (None when killed) and capped output."""

    iteration: int
    exit_status: int | None
    output: str

    @property
    def passed(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A task plus, by the database's clock, the seconds since it first started and until it may run again,
    and the latest verify command result."""

    task: Task
    elapsed_seconds: float
    wait_seconds: float = 0.0
    last_verify: VerifyRun | None = None


@dataclass(frozen=True, slots=True)
class Iteration:
    """One stored iteration."""

    task_id: TaskId
    number: int
    status: IterationStatus
    input_summary: str
    output: str | None
    exit_status: int | None
    error: str | None
    duration_seconds: float | None
    cost_usd: Decimal | None
    tokens: int | None
    completed_task: bool
    checkpoint_commit: str | None
    hook_results: list[dict[str, object]] = field(default_factory=list)
    verify_exit_status: int | None = None
    verify_output: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str = ""
