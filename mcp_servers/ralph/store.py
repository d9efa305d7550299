"""Ralph's tool-side SQL: submit, read, list, stop and approve tasks, returned as domain objects.

Every write that changes what a client can see sends `NOTIFY ralph_task_changed, '<task id>'` in its own
transaction, so servers in other processes learn of it once it is committed. What workers do to the tasks they
hold (claim, leases, iterations) lives in `queue.py`.
"""

import uuid
from datetime import datetime
from typing import Final

import asyncpg

from mcp_servers.ralph._sql import TASK_COLUMNS, finish_locked, notify, stored_from_row, task_from_row
from mcp_servers.ralph.domain import (
    CompletionReason,
    Iteration,
    IterationStatus,
    StoredTask,
    Task,
    TaskId,
    TaskSpec,
    TaskStatus,
)
from mcp_servers.shared.errors import Conflict, NotFound
from mcp_servers.shared.postgres.pool import Database

_ITERATION_COLUMNS: Final = """
    task_id, number, status, input_summary, output, exit_status, error, duration_seconds, cost_usd, tokens,
    completed_task, checkpoint_commit, hook_results, verify_exit_status, verify_output, started_at, finished_at,
    worker_id
"""


def _iteration(row: asyncpg.Record) -> Iteration:
    return Iteration(
        task_id=TaskId(row["task_id"]),
        number=row["number"],
        status=IterationStatus(row["status"]),
        input_summary=row["input_summary"],
        output=row["output"],
        exit_status=row["exit_status"],
        error=row["error"],
        duration_seconds=row["duration_seconds"],
        cost_usd=row["cost_usd"],
        tokens=row["tokens"],
        completed_task=row["completed_task"],
        checkpoint_commit=row["checkpoint_commit"],
        hook_results=list(row["hook_results"]),
        verify_exit_status=row["verify_exit_status"],
        verify_output=row["verify_output"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_id=row["worker_id"],
    )


class TaskStore:
    """What the tools read and write. Does not own the database (the harness lifespan does)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def insert(self, task_id: TaskId, spec: TaskSpec, status: TaskStatus) -> Task:
        """Store a new task as `queued` or `awaiting_approval`."""
        hooks = [{"event": hook.event, "command": hook.command, "blocking": hook.blocking} for hook in spec.hooks]
        async with self.database.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO ralph_tasks AS t (id, prompt, backend, completion_promise, verify_command, max_iterations,
                    max_seconds, max_cost_usd, workspace, git_checkpoint, hooks, origin, submitted_by, status,
                    require_approval, feed_verify_output)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                RETURNING {TASK_COLUMNS}
                """,
                task_id,
                spec.prompt,
                spec.backend,
                spec.completion_promise,
                spec.verify_command,
                spec.limits.max_iterations,
                spec.limits.max_seconds,
                spec.limits.max_cost_usd,
                spec.workspace,
                spec.git_checkpoint,
                hooks,
                spec.origin,
                spec.submitted_by,
                status.value,
                spec.require_approval,
                spec.feed_verify_output,
            )
            await notify(conn, task_id)
        assert row is not None
        return task_from_row(row)

    async def get(self, task_id: uuid.UUID) -> StoredTask:
        """The task, or NotFound."""
        row = await self.database.fetchrow(f"SELECT {TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}; call list_tasks to see existing tasks")
        return stored_from_row(row)

    async def ids_between(self, low: str, high: str, limit: int) -> list[str]:
        """Ids of tasks in the inclusive id range, in id order (completions of a typed id prefix)."""
        rows = await self.database.fetch(
            "SELECT id FROM ralph_tasks WHERE id BETWEEN $1::uuid AND $2::uuid ORDER BY id LIMIT $3", low, high, limit
        )
        return [str(row["id"]) for row in rows]

    async def page(
        self, *, status: TaskStatus | None, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[StoredTask]:
        """Up to `limit` tasks newest first, after the keyset position `after` (created_at, id) when given."""
        rows = await self.database.fetch(
            f"""
            SELECT {TASK_COLUMNS} FROM ralph_tasks t
            WHERE ($1::text IS NULL OR t.status = $1)
              AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3::uuid))
            ORDER BY t.created_at DESC, t.id DESC
            LIMIT $4
            """,
            status.value if status else None,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [stored_from_row(row) for row in rows]

    async def count_unfinished(self, submitted_by: str) -> int:
        """How many of this submitter's tasks have not ended yet (queued, awaiting approval or running)."""
        count = await self.database.fetchval(
            "SELECT count(*) FROM ralph_tasks WHERE submitted_by = $1 AND status = ANY($2::text[])",
            submitted_by,
            [status.value for status in TaskStatus if not status.terminal],
        )
        return int(count or 0)

    async def iterations(self, task_id: uuid.UUID) -> list[Iteration]:
        """Every iteration of a task in order; NotFound if the task does not exist."""
        async with self.database.connection() as conn:
            exists = await conn.fetchval("SELECT 1 FROM ralph_tasks WHERE id = $1", task_id)
            if exists is None:
                raise NotFound(f"no task with id {task_id}; call list_tasks to see existing tasks")
            rows = await conn.fetch(
                f"SELECT {_ITERATION_COLUMNS} FROM ralph_iterations WHERE task_id = $1 ORDER BY number", task_id
            )
        return [_iteration(row) for row in rows]

    async def request_stop(self, task_id: uuid.UUID) -> StoredTask:
        """Stop a task: at once if no live worker holds it, else flag it for its worker (which kills the run).

        Raises:
            NotFound: unknown id.
            Conflict: the task already ended (other than by a stop).
        """
        async with self.database.transaction() as conn:
            row = await conn.fetchrow(
                """
                SELECT status, lease_owner IS NOT NULL AND lease_expires_at > now() AS leased
                FROM ralph_tasks WHERE id = $1 FOR UPDATE
                """,
                task_id,
            )
            if row is None:
                raise NotFound(f"no task with id {task_id}; call list_tasks to see existing tasks")
            status = TaskStatus(row["status"])
            if status is TaskStatus.STOPPED:
                pass
            elif status.terminal:
                raise Conflict(f"task {task_id} already ended as {status.value}; nothing to stop")
            elif row["leased"]:
                await conn.execute(
                    "UPDATE ralph_tasks SET stop_requested = true, updated_at = clock_timestamp() WHERE id = $1",
                    task_id,
                )
            else:
                await conn.execute(
                    """
                    UPDATE ralph_iterations SET status = 'interrupted', finished_at = clock_timestamp(),
                        error = 'stopped while no worker held the task'
                    WHERE task_id = $1 AND status = 'running'
                    """,
                    task_id,
                )
                await finish_locked(conn, task_id, CompletionReason.STOPPED_BY_USER, "stopped by request")
            await notify(conn, task_id)
            updated = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        assert updated is not None
        return stored_from_row(updated)

    async def decide_approval(
        self, task_id: uuid.UUID, *, approved: bool, note: str | None, decided_by: str
    ) -> StoredTask:
        """Release a parked task into the queue, or reject it (terminal).

        Raises:
            NotFound: unknown id.
            Conflict: the task is not awaiting approval.
        """
        async with self.database.transaction() as conn:
            status = await conn.fetchval("SELECT status FROM ralph_tasks WHERE id = $1 FOR UPDATE", task_id)
            if status is None:
                raise NotFound(f"no task with id {task_id}; call list_tasks to see existing tasks")
            if status != TaskStatus.AWAITING_APPROVAL.value:
                raise Conflict(f"task {task_id} is {status}, not awaiting approval")
            await conn.execute(
                """
                UPDATE ralph_tasks SET approved = $2, approval_note = $3, approved_by = $4,
                    approved_at = clock_timestamp(), updated_at = clock_timestamp(),
                    status = CASE WHEN $2 THEN 'queued' ELSE 'rejected' END,
                    completion_reason = CASE WHEN $2 THEN NULL ELSE 'approval_rejected' END,
                    detail = CASE WHEN $2 THEN NULL ELSE coalesce($3, 'rejected') END,
                    finished_at = CASE WHEN $2 THEN NULL ELSE clock_timestamp() END,
                    not_before = clock_timestamp()
                WHERE id = $1
                """,
                task_id,
                approved,
                note,
                decided_by,
            )
            await notify(conn, task_id)
            row = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        assert row is not None
        return stored_from_row(row)
