"""SQL both Ralph adapters share: the task columns, rows as domain objects, NOTIFY, and ending a locked task.

The tool-side store (`store.py`) and the workers' queue (`queue.py`) read and end the same rows; this module
keeps one spelling of each so the two cannot drift.
"""

import uuid
from typing import Any, Final

import asyncpg

from mcp_servers.ralph.domain import (
    REASON_STATUS,
    CompletionReason,
    Hook,
    Limits,
    StoredTask,
    Task,
    TaskId,
    TaskSpec,
    TaskStatus,
    VerifyRun,
)
from mcp_servers.shared.postgres.notify import TASK_CHANGED_CHANNEL
from mcp_servers.shared.postgres.pool import Connection

# Every change a client can see is announced here, with the task id as payload, in the transaction that makes it.
CHANNEL: Final = TASK_CHANGED_CHANNEL

TASK_COLUMNS: Final = """
    t.id, t.prompt, t.backend, t.completion_promise, t.verify_command, t.max_iterations, t.max_seconds,
    t.max_cost_usd, t.workspace, t.git_checkpoint, t.hooks, t.origin, t.submitted_by, t.status,
    t.completion_reason, t.detail, t.stop_requested, t.lease_owner, t.next_iteration, t.not_before,
    t.consecutive_failures, t.repeat_count, t.last_output_sha256, t.cost_usd, t.cost_known, t.require_approval,
    t.approved, t.approval_note, t.approved_by, t.created_at, t.started_at, t.finished_at, t.updated_at,
    t.feed_verify_output,
    (SELECT jsonb_build_object('iteration', i.number, 'exit_status', i.verify_exit_status, 'output', i.verify_output)
        FROM ralph_iterations i WHERE i.task_id = t.id AND i.verify_output IS NOT NULL
        ORDER BY i.number DESC LIMIT 1) AS last_verify,
    coalesce(extract(epoch FROM coalesce(t.finished_at, clock_timestamp()) - t.started_at), 0)::float8
        AS elapsed_seconds,
    greatest(extract(epoch FROM t.not_before - clock_timestamp()), 0)::float8 AS wait_seconds
"""


def _hooks_from_json(value: Any) -> tuple[Hook, ...]:
    return tuple(Hook(event=item["event"], command=item["command"], blocking=bool(item["blocking"])) for item in value)


def task_from_row(row: asyncpg.Record) -> Task:
    """A row selected with TASK_COLUMNS as a Task."""
    spec = TaskSpec(
        prompt=row["prompt"],
        backend=row["backend"],
        limits=Limits(row["max_iterations"], row["max_seconds"], row["max_cost_usd"]),
        completion_promise=row["completion_promise"],
        verify_command=row["verify_command"],
        workspace=row["workspace"],
        git_checkpoint=row["git_checkpoint"],
        hooks=_hooks_from_json(row["hooks"]),
        require_approval=row["require_approval"],
        origin=row["origin"],
        submitted_by=row["submitted_by"],
        feed_verify_output=row["feed_verify_output"],
    )
    reason = row["completion_reason"]
    return Task(
        id=TaskId(row["id"]),
        spec=spec,
        status=TaskStatus(row["status"]),
        completion_reason=CompletionReason(reason) if reason else None,
        detail=row["detail"],
        stop_requested=row["stop_requested"],
        next_iteration=row["next_iteration"],
        consecutive_failures=row["consecutive_failures"],
        repeat_count=row["repeat_count"],
        last_output_sha256=row["last_output_sha256"],
        cost_usd=row["cost_usd"],
        cost_known=row["cost_known"],
        approved=row["approved"],
        approval_note=row["approval_note"],
        approved_by=row["approved_by"],
        lease_owner=row["lease_owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        not_before=row["not_before"],
    )


def stored_from_row(row: asyncpg.Record) -> StoredTask:
    """A row selected with TASK_COLUMNS as a StoredTask (with the database-clock timings)."""
    verify = row["last_verify"]
    last = VerifyRun(verify["iteration"], verify["exit_status"], verify["output"]) if verify else None
    return StoredTask(task_from_row(row), float(row["elapsed_seconds"]), float(row["wait_seconds"]), last)


async def notify(conn: Connection, task_id: uuid.UUID) -> None:
    """Announce a change of the task; delivered when the surrounding transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(task_id))


async def finish_locked(conn: Connection, task_id: uuid.UUID, reason: CompletionReason, detail: str | None) -> None:
    """End a task whose row the caller holds locked, with the status its reason implies; releases the lease."""
    await conn.execute(
        """
        UPDATE ralph_tasks SET status = $2, completion_reason = $3, detail = $4,
            finished_at = clock_timestamp(), updated_at = clock_timestamp(),
            lease_owner = NULL, lease_expires_at = NULL, stop_requested = false
        WHERE id = $1
        """,
        task_id,
        REASON_STATUS[reason].value,
        reason.value,
        detail,
    )
