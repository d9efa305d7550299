"""The lease-fenced task queue workers use: claim tasks, renew leases, record iterations, finish or release.

Workers are fenced by their lease: every write a worker makes checks `lease_owner` (and, to start an iteration,
that the lease has not expired by the database's clock), so a worker that lost its task can no longer change it.
Every change a client can see sends `NOTIFY ralph_task_changed` in its transaction, as the tool-side store does.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from mcp_servers.ralph._sql import CHANNEL, TASK_COLUMNS, finish_locked, notify, stored_from_row, task_from_row
from mcp_servers.ralph.domain import (
    CompletionReason,
    HookResult,
    IterationStatus,
    StoredTask,
    Task,
    TaskStatus,
    VerifyRun,
)
from mcp_servers.ralph.policy import LoopState
from mcp_servers.shared.postgres.pool import Database


@dataclass(frozen=True, slots=True)
class OrphanIteration:
    """An iteration whose worker vanished: where its process group ran, to clean up on the same host."""

    number: int
    worker_host: str
    process_group: int | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task a worker now holds, and the iterations a dead predecessor left unfinished (now `interrupted`)."""

    task: Task
    previous_status: TaskStatus
    interrupted: tuple[OrphanIteration, ...]


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
    # The verify command's result after this iteration; None when no verify command ran.
    verify: VerifyRun | None = None


class TaskQueue:
    """The workers' side of the task table. Does not own the database (the lifespan that built it does)."""

    def __init__(self, database: Database) -> None:
        self.database = database

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
                RETURNING picked.previous_status, {TASK_COLUMNS}
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
                await notify(conn, task_id)
        by_task: dict[uuid.UUID, list[OrphanIteration]] = {}
        for orphan in orphans:
            by_task.setdefault(orphan["task_id"], []).append(
                OrphanIteration(orphan["number"], orphan["worker_host"], orphan["process_group"])
            )
        return [
            Claimed(task_from_row(row), TaskStatus(row["previous_status"]), tuple(by_task.get(row["id"], ())))
            for row in rows
        ]

    async def lease_owners(self, prefix: str) -> list[str]:
        """The workers whose ids start with `prefix` that hold leases now (e.g. this host's earlier processes)."""
        rows = await self.database.fetch(
            """
            SELECT DISTINCT lease_owner FROM ralph_tasks
            WHERE lease_owner IS NOT NULL AND starts_with(lease_owner, $1) AND lease_expires_at > clock_timestamp()
            """,
            prefix,
        )
        return [row["lease_owner"] for row in rows]

    async def expire_leases(self, owners: list[str]) -> int:
        """End the leases of workers known to be dead, so their tasks are claimed now instead of at expiry; the
        claim then settles their unfinished iterations as `interrupted` (and kills what they left behind)."""
        if not owners:
            return 0
        async with self.database.transaction() as conn:
            rows = await conn.fetch(
                """
                UPDATE ralph_tasks SET lease_expires_at = clock_timestamp(), not_before = clock_timestamp()
                WHERE lease_owner = ANY($1::text[]) AND status = 'running'
                RETURNING id
                """,
                owners,
            )
            for row in rows:
                await notify(conn, row["id"])
        return len(rows)

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
            SELECT {TASK_COLUMNS} FROM ralph_tasks t
            WHERE t.id = $1 AND t.lease_owner = $2 AND t.lease_expires_at > clock_timestamp()
            """,
            task_id,
            worker_id,
        )
        return stored_from_row(row) if row is not None else None

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
                    verify_exit_status = $21, verify_output = $22, finished_at = clock_timestamp()
                WHERE task_id IN (SELECT id FROM owned) AND number = $2 AND status = 'running'
                RETURNING task_id
            ), t AS (
                UPDATE ralph_tasks SET consecutive_failures = $16, repeat_count = $17, last_output_sha256 = $18,
                    cost_usd = cost_usd + coalesce($10, 0), cost_known = cost_known AND $10::numeric IS NOT NULL,
                    not_before = clock_timestamp() + make_interval(secs => $19), updated_at = clock_timestamp()
                WHERE id IN (SELECT task_id FROM recorded)
                RETURNING *
            )
            SELECT {TASK_COLUMNS} FROM t, LATERAL pg_notify($20, t.id::text)
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
            record.verify.exit_status if record.verify is not None else None,
            record.verify.output if record.verify is not None else None,
        )
        return stored_from_row(row) if row is not None else None

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
            await finish_locked(conn, task_id, reason, detail)
            await notify(conn, task_id)
            row = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM ralph_tasks t WHERE t.id = $1", task_id)
        return task_from_row(row) if row is not None else None

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
            await notify(conn, task_id)
