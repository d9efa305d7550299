"""Ralph's SQL: tasks and iterations in PostgreSQL, returned as domain objects.

Every write that changes what a client can see sends `NOTIFY ralph_task_changed, '<task id>'` in its own
transaction, so servers in other processes learn of it once it is committed.

Workers are fenced by their lease: every write a worker makes checks `lease_owner` (and, to start an iteration,
that the lease has not expired by the database's clock), so a worker that lost its task can no longer change it.
"""

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import asyncpg

from mcp_servers.ralph.domain import (
    REASON_STATUS,
    CompletionReason,
    Hook,
    HookResult,
    Iteration,
    IterationStatus,
    Limits,
    Task,
    TaskId,
    TaskSpec,
    TaskStatus,
)
from mcp_servers.ralph.policy import LoopState
from mcp_servers.shared.errors import Conflict, InvalidRequest, NotFound
from mcp_servers.shared.postgres.notify import TASK_CHANGED_CHANNEL
from mcp_servers.shared.postgres.pool import Connection, Database

logger = logging.getLogger(__name__)

CHANNEL: Final = TASK_CHANGED_CHANNEL

_TASK_COLUMNS: Final = """
    t.id, t.prompt, t.backend, t.completion_promise, t.verify_command, t.max_iterations, t.max_seconds,
    t.max_cost_usd, t.workspace, t.git_checkpoint, t.hooks, t.origin, t.submitted_by, t.status,
    t.completion_reason, t.detail, t.stop_requested, t.lease_owner, t.next_iteration, t.not_before,
    t.consecutive_failures, t.repeat_count, t.last_output_sha256, t.cost_usd, t.cost_known, t.require_approval,
    t.approved, t.approval_note, t.approved_by, t.created_at, t.started_at, t.finished_at, t.updated_at,
    coalesce(extract(epoch FROM coalesce(t.finished_at, clock_timestamp()) - t.started_at), 0)::float8
        AS elapsed_seconds,
    greatest(extract(epoch FROM t.not_before - clock_timestamp()), 0)::float8 AS wait_seconds
"""

_ITERATION_COLUMNS: Final = """
    task_id, number, status, input_summary, output, exit_status, error, duration_seconds, cost_usd, tokens,
    completed_task, checkpoint_commit, hook_results, started_at, finished_at, worker_id
"""


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A task plus, by the database's clock, the seconds since it first started and until it may run again."""

    task: Task
    elapsed_seconds: float
    wait_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task a worker now holds, and the iterations a dead predecessor left unfinished (now `interrupted`)."""

    task: Task
    previous_status: TaskStatus
    interrupted: tuple["OrphanIteration", ...]


@dataclass(frozen=True, slots=True)
class OrphanIteration:
    """An iteration whose worker vanished: where its process group ran, to clean up on the same host."""

    number: int
    worker_host: str
    process_group: int | None


@dataclass(frozen=True, slots=True)
class IterationRecord:
    """The result of one iteration, as the worker records it."""

    status: IterationStatus
    input_summary: str
    output: str
    output_sha256: str | None
    exit_status: int | None
    error: str | None
    duration_seconds: float
    cost_usd: Decimal | None
    tokens: int | None
    completed_task: bool
    checkpoint_commit: str | None
    hook_results: tuple[HookResult, ...]


def _hooks_from_json(value: Any) -> tuple[Hook, ...]:
    return tuple(Hook(event=item["event"], command=item["command"], blocking=bool(item["blocking"])) for item in value)


def _task(row: asyncpg.Record) -> Task:
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


def _stored(row: asyncpg.Record) -> StoredTask:
    return StoredTask(_task(row), float(row["elapsed_seconds"]), float(row["wait_seconds"]))


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
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_id=row["worker_id"],
    )


def encode_cursor(created_at: datetime, task_id: uuid.UUID) -> str:
    """An opaque keyset cursor: the last row's (created_at, id)."""
    raw = json.dumps([created_at.isoformat(), str(task_id)]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; InvalidRequest if it was not made by `encode_cursor`."""
    try:
        created_at, task_id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        return datetime.fromisoformat(created_at), uuid.UUID(task_id)
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise InvalidRequest("cursor is not one returned by list_tasks; omit it to start from the newest") from None


async def _notify(conn: Connection, task_id: uuid.UUID) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(task_id))


class TaskStore:
    """Task and iteration persistence. Does not own the database (the harness lifespan does)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- callers (tools) --------------------------------------------------------------------------------

    async def insert(self, task_id: TaskId, spec: TaskSpec, status: TaskStatus) -> Task:
        """Store a new task as `queued` or `awaiting_approval`."""
        hooks = [{"event": hook.event, "command": hook.command, "blocking": hook.blocking} for hook in spec.hooks]
        async with self.database.transaction() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO ralph_tasks AS t (id, prompt, backend, completion_promise, verify_command, max_iterations,
                    max_seconds, max_cost_usd, workspace, git_checkpoint, hooks, origin, submitted_by, status,
                    require_approval)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                RETURNING {_TASK_COLUMNS}
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
            )
            await _notify(conn, task_id)
        assert row is not None
        return _task(row)

    async def get(self, task_id: uuid.UUID) -> StoredTask:
        """The task, or NotFound."""
        row = await self.database.fetchrow(f"SELECT {_TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        if row is None:
            raise NotFound(f"no task with id {task_id}; call list_tasks to see existing tasks")
        return _stored(row)

    async def page(
        self, *, status: TaskStatus | None, cursor: str | None, limit: int
    ) -> tuple[list[StoredTask], str | None]:
        """Newest first, `limit` per page; the cursor resumes after the last task of the previous page."""
        position = decode_cursor(cursor) if cursor else None
        rows = await self.database.fetch(
            f"""
            SELECT {_TASK_COLUMNS} FROM ralph_tasks t
            WHERE ($1::text IS NULL OR t.status = $1)
              AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3::uuid))
            ORDER BY t.created_at DESC, t.id DESC
            LIMIT $4
            """,
            status.value if status else None,
            position[0] if position else None,
            position[1] if position else None,
            limit + 1,
        )
        page = [_stored(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1].task
            next_cursor = encode_cursor(last.created_at, last.id)
        return page, next_cursor

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
                await self._finish_locked(conn, task_id, CompletionReason.STOPPED_BY_USER, "stopped by request")
            await _notify(conn, task_id)
            updated = await conn.fetchrow(f"SELECT {_TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        assert updated is not None
        return _stored(updated)

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
            await _notify(conn, task_id)
            row = await conn.fetchrow(f"SELECT {_TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        assert row is not None
        return _stored(row)

    # -- workers ------------------------------------------------------------------------------------------

    async def claim(self, worker_id: str, *, limit: int, lease_seconds: float) -> list[Claimed]:
        """Take up to `limit` runnable tasks (queued, or running with an expired lease), oldest first.

        Iterations a previous holder left `running` become `interrupted` in the same transaction: they are never
        run again (at-most-once per iteration number); the task resumes from its next number.
        """
        if limit <= 0:
            return []
        async with self.database.transaction() as conn:
            rows = await conn.fetch(
                f"""
                WITH picked AS (
                    SELECT id, status AS previous_status FROM ralph_tasks
                    WHERE status IN ('queued', 'running') AND not_before <= clock_timestamp()
                      AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp())
                    ORDER BY created_at, id
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE ralph_tasks t SET lease_owner = $1,
                    lease_expires_at = clock_timestamp() + make_interval(secs => $3),
                    status = 'running', started_at = coalesce(t.started_at, clock_timestamp()),
                    updated_at = clock_timestamp()
                FROM picked WHERE t.id = picked.id
                RETURNING picked.previous_status, {_TASK_COLUMNS}
                """,
                worker_id,
                limit,
                lease_seconds,
            )
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            orphans = await conn.fetch(
                """
                UPDATE ralph_iterations SET status = 'interrupted', finished_at = clock_timestamp(),
                    error = 'its worker stopped before recording a result; not run again'
                WHERE task_id = ANY($1::uuid[]) AND status = 'running'
                RETURNING task_id, number, worker_host, process_group
                """,
                ids,
            )
            for task_id in ids:
                await _notify(conn, task_id)
        by_task: dict[uuid.UUID, list[OrphanIteration]] = {}
        for orphan in orphans:
            by_task.setdefault(orphan["task_id"], []).append(
                OrphanIteration(orphan["number"], orphan["worker_host"], orphan["process_group"])
            )
        return [
            Claimed(_task(row), TaskStatus(row["previous_status"]), tuple(by_task.get(row["id"], ()))) for row in rows
        ]

    async def renew(self, worker_id: str, task_ids: list[uuid.UUID], *, lease_seconds: float) -> set[uuid.UUID]:
        """Extend the leases this worker still holds; returns those ids (a missing one was lost)."""
        if not task_ids:
            return set()
        rows = await self.database.fetch(
            """
            UPDATE ralph_tasks SET lease_expires_at = clock_timestamp() + make_interval(secs => $3)
            WHERE id = ANY($2::uuid[]) AND lease_owner = $1
            RETURNING id
            """,
            worker_id,
            task_ids,
            lease_seconds,
        )
        return {row["id"] for row in rows}

    async def stop_requests(self, worker_id: str, task_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of this worker's tasks a client asked to stop."""
        if not task_ids:
            return set()
        rows = await self.database.fetch(
            "SELECT id FROM ralph_tasks WHERE id = ANY($2::uuid[]) AND lease_owner = $1 AND stop_requested",
            worker_id,
            task_ids,
        )
        return {row["id"] for row in rows}

    async def refresh(self, task_id: uuid.UUID, worker_id: str) -> StoredTask | None:
        """The task if this worker still holds its lease, else None."""
        row = await self.database.fetchrow(
            f"""
            SELECT {_TASK_COLUMNS} FROM ralph_tasks t
            WHERE t.id = $1 AND t.lease_owner = $2 AND t.lease_expires_at > clock_timestamp()
            """,
            task_id,
            worker_id,
        )
        return _stored(row) if row is not None else None

    async def begin_iteration(
        self, task_id: uuid.UUID, *, worker_id: str, worker_host: str, input_summary: str
    ) -> int | None:
        """Claim the task's next iteration number and record it as running; None if the lease is gone.

        One statement (one durable commit): the number advances only under a live lease and the row is inserted
        with it, so no two workers can ever start the same (task, number), even across a database crash.
        """
        number = await self.database.fetchval(
            """
            WITH advanced AS (
                UPDATE ralph_tasks SET next_iteration = next_iteration + 1, updated_at = clock_timestamp()
                WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > clock_timestamp()
                  AND status = 'running' AND NOT stop_requested
                RETURNING id, next_iteration - 1 AS number
            ), inserted AS (
                INSERT INTO ralph_iterations (task_id, number, status, input_summary, worker_id, worker_host)
                SELECT id, number, 'running', $3, $2, $4 FROM advanced
                RETURNING task_id, number
            )
            SELECT number FROM inserted, LATERAL pg_notify($5, task_id::text)
            """,
            task_id,
            worker_id,
            input_summary,
            worker_host,
            CHANNEL,
        )
        return int(number) if number is not None else None

    async def last_output(self, task_id: uuid.UUID) -> str | None:
        """The output of the task's latest iteration that recorded one (a resumed task continues from it)."""
        value = await self.database.fetchval(
            """
            SELECT output FROM ralph_iterations WHERE task_id = $1 AND output IS NOT NULL
            ORDER BY number DESC LIMIT 1
            """,
            task_id,
        )
        return str(value) if value is not None else None

    async def add_hook_results(self, task_id: uuid.UUID, number: int, results: list[HookResult]) -> None:
        """Append hook results (on_complete hooks run after the last iteration was recorded)."""
        if not results:
            return
        await self.database.execute(
            "UPDATE ralph_iterations SET hook_results = hook_results || $3::jsonb WHERE task_id = $1 AND number = $2",
            task_id,
            number,
            [result.as_json() for result in results],
        )

    async def set_process_group(self, task_id: uuid.UUID, number: int, process_group: int) -> None:
        """Remember where an iteration's command runs, so a successor on this host can clean up after a crash."""
        await self.database.execute(
            "UPDATE ralph_iterations SET process_group = $3 WHERE task_id = $1 AND number = $2 AND status = 'running'",
            task_id,
            number,
            process_group,
        )

    async def finish_iteration(
        self,
        task_id: uuid.UUID,
        number: int,
        *,
        worker_id: str,
        record: IterationRecord,
        state: LoopState,
        backoff_seconds: float,
    ) -> StoredTask | None:
        """Record an iteration's result and the loop state after it; returns the task as it now stands, or None
        if the lease was lost meanwhile.

        Committed without waiting for the WAL flush (`synchronous_commit = off` for this statement only): a
        database crash may lose this record, and the iteration then reads `interrupted`, which never causes a
        re-run. `begin_iteration`, which the at-most-once guarantee rests on, stays durable.
        """
        row = await self.database.fetchrow(
            f"""
            WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
            owned AS (
                SELECT id FROM ralph_tasks, relaxed WHERE id = $1 AND lease_owner = $15 FOR UPDATE OF ralph_tasks
            ), recorded AS (
                UPDATE ralph_iterations SET status = $3, input_summary = $4, output = $5, output_sha256 = $6,
                    exit_status = $7, error = $8, duration_seconds = $9, cost_usd = $10, tokens = $11,
                    completed_task = $12, checkpoint_commit = $13, hook_results = $14,
                    finished_at = clock_timestamp()
                WHERE task_id IN (SELECT id FROM owned) AND number = $2 AND status = 'running'
                RETURNING task_id
            ), t AS (
                UPDATE ralph_tasks SET consecutive_failures = $16, repeat_count = $17, last_output_sha256 = $18,
                    cost_usd = cost_usd + coalesce($10, 0), cost_known = cost_known AND $10::numeric IS NOT NULL,
                    not_before = clock_timestamp() + make_interval(secs => $19), updated_at = clock_timestamp()
                WHERE id IN (SELECT task_id FROM recorded)
                RETURNING *
            )
            SELECT {_TASK_COLUMNS} FROM t, LATERAL pg_notify($20, t.id::text)
            """,
            task_id,
            number,
            record.status.value,
            record.input_summary,
            record.output,
            record.output_sha256,
            record.exit_status,
            record.error,
            record.duration_seconds,
            record.cost_usd,
            record.tokens,
            record.completed_task,
            record.checkpoint_commit,
            [result.as_json() for result in record.hook_results],
            worker_id,
            state.consecutive_failures,
            state.repeat_count,
            state.last_output_sha256,
            backoff_seconds,
            CHANNEL,
        )
        return _stored(row) if row is not None else None

    async def finish_task(
        self, task_id: uuid.UUID, *, worker_id: str, reason: CompletionReason, detail: str | None
    ) -> Task | None:
        """End a held task with the status its reason implies; None if the lease was lost."""
        async with self.database.transaction() as conn:
            owned = await conn.fetchval(
                "SELECT 1 FROM ralph_tasks WHERE id = $1 AND lease_owner = $2 FOR UPDATE", task_id, worker_id
            )
            if owned is None:
                return None
            await self._finish_locked(conn, task_id, reason, detail)
            await _notify(conn, task_id)
            row = await conn.fetchrow(f"SELECT {_TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        return _task(row) if row is not None else None

    async def _finish_locked(
        self, conn: Connection, task_id: uuid.UUID, reason: CompletionReason, detail: str | None
    ) -> None:
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

    async def release(self, task_id: uuid.UUID, worker_id: str) -> None:
        """Give a task back to the queue at once (worker shutting down); it stays `running` for the next one."""
        async with self.database.transaction() as conn:
            await conn.execute(
                """
                UPDATE ralph_iterations SET status = 'interrupted', finished_at = clock_timestamp(),
                    error = 'its worker shut down before recording a result; not run again'
                WHERE task_id = $1 AND status = 'running'
                  AND EXISTS (SELECT 1 FROM ralph_tasks WHERE id = $1 AND lease_owner = $2)
                """,
                task_id,
                worker_id,
            )
            await conn.execute(
                "UPDATE ralph_tasks SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2",
                task_id,
                worker_id,
            )
            await _notify(conn, task_id)
