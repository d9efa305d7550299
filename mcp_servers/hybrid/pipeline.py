"""The one telemetry learning pipeline: JSONL events -> interactions, training examples, tool statistics.

Exactly once: each batch (at most `checkpoint_every_events` events) is applied in ONE PostgreSQL transaction
that also records the event ids (persistent dedup) and moves the checkpoint. The checkpoint row is locked and
compared first, so a second pipeline (another replica, a restarted process) never applies a batch twice, and a
crash anywhere loses nothing: the next run resumes from the last committed checkpoint.

Backpressure: when the unconsumed backlog passes `backpressure_bytes`, low-value work (tool-call statistics)
is shed and counted, and `backpressure.json` appears in the telemetry directory for producers to read; it is
removed when the backlog falls below the threshold again.
"""

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from mcp_servers.hybrid.learning import content_hash, example_messages, reusability, value_score, worth_training
from mcp_servers.hybrid.routing import classify_task, detect_secret, estimate_complexity
from mcp_servers.shared.config import HybridSettings
from mcp_servers.shared.errors import StackError
from mcp_servers.shared.files import write_atomically
from mcp_servers.shared.postgres.pool import Connection, Database
from mcp_servers.shared.telemetry import BACKPRESSURE_SIGNAL, Checkpoint, TelemetryEvent, TelemetryReader

logger = logging.getLogger(__name__)

CONSUMER: Final = "learning"
# Interactions created from events get ids derived from the event id, so a replay can never duplicate them.
EVENT_NAMESPACE: Final = uuid.UUID("0b7e3f4c-2d1a-5e8b-9f60-7c4a1d2e3b5f")
_OUTCOMES = ("success", "partial", "failure")


def _write_signal(path: Path, body: dict[str, Any] | None) -> None:
    if not path.parent.is_dir():
        return
    if body is None:
        path.unlink(missing_ok=True)
        return
    write_atomically(path, json.dumps(body) + "\n")


@dataclass(slots=True)
class PipelineState:
    """Live counters of this process's pipeline (PostgreSQL holds the durable ones)."""

    running: bool = False
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    checkpoint_updated_at: str | None = None
    checkpoints_written: int = 0
    events_processed: int = 0
    duplicates_skipped: int = 0
    shed_events: int = 0
    lag_bytes: int = 0
    backpressure: bool = False
    files_removed: int = 0


class LearningPipeline:
    """Consumes telemetry into PostgreSQL; run exactly one `run()` per process (replicas are safe too)."""

    def __init__(
        self,
        database: Database,
        directory: Path,
        settings: HybridSettings | Callable[[], HybridSettings],
        *,
        on_lag: Callable[[int], None] | None = None,
    ) -> None:
        """`settings` may be a callable returning the live settings (batch size and threshold change at run time);
        `on_lag` receives each backlog measurement (the server sets its backlog gauge with it)."""
        self._database = database
        self._directory = directory
        self._settings_of = settings if callable(settings) else (lambda: settings)
        self._on_lag = on_lag
        self.reader = TelemetryReader(directory)
        self.state = PipelineState()
        self._loaded = False
        # The first refresh writes the signal whatever the state: a file left by a previous run (killed while
        # backpressure was on) would otherwise hold producers back after a restart with a small backlog.
        self._signal_synced = False

    @property
    def settings(self) -> HybridSettings:
        """The live Hybrid settings (runtime overrides applied)."""
        return self._settings

    @property
    def _settings(self) -> HybridSettings:
        return self._settings_of()

    @property
    def signal_path(self) -> Path:
        """Where producers look for the backpressure signal."""
        return self._directory / BACKPRESSURE_SIGNAL

    async def load(self) -> Checkpoint:
        """Create the checkpoint row if absent and adopt the committed position."""
        async with self._database.transaction() as conn:
            await conn.execute(
                """INSERT INTO hybrid_pipeline_checkpoints (consumer, position) VALUES ($1, $2::jsonb)
                   ON CONFLICT (consumer) DO NOTHING""",
                CONSUMER,
                json.dumps({"seq": 0, "offset": 0}),
            )
            row = await conn.fetchrow(
                "SELECT position, events_processed, updated_at FROM hybrid_pipeline_checkpoints WHERE consumer = $1",
                CONSUMER,
            )
        assert row is not None
        self.state.checkpoint = _checkpoint(row["position"])
        self.state.checkpoint_updated_at = row["updated_at"].isoformat()
        self._loaded = True
        return self.state.checkpoint

    async def measure_lag(self) -> int:
        """Bytes of telemetry after the checkpoint (no side effects)."""
        lag = await self.reader.backlog_bytes(self.state.checkpoint)
        self.state.lag_bytes = lag
        if self._on_lag is not None:
            self._on_lag(lag)
        return lag

    async def refresh_backpressure(self) -> bool:
        """Measure the backlog, flip the signal file when it crosses the threshold; returns the state."""
        lag = await self.measure_lag()
        active = lag > self._settings.backpressure_bytes
        # While active the file is rewritten on every refresh: its age is the pipeline's heartbeat, so producers
        # can ignore a signal left by a pipeline that died (BACKPRESSURE_STALE_SECONDS).
        if active or active != self.state.backpressure or not self._signal_synced:
            body = (
                {
                    "active": True,
                    "backlog_bytes": lag,
                    "threshold_bytes": self._settings.backpressure_bytes,
                    "since": time.time(),
                    "advice": "slow down or drop low-value telemetry until this file disappears",
                }
                if active
                else None
            )
            await anyio.to_thread.run_sync(_write_signal, self.signal_path, body)
            self._signal_synced = True
            if active != self.state.backpressure:
                logger.warning(
                    "telemetry backpressure on" if active else "telemetry backpressure off",
                    extra={"backlog_bytes": lag, "threshold_bytes": self._settings.backpressure_bytes},
                )
            self.state.backpressure = active
        return active

    async def run_once(self) -> int:
        """Apply one batch; returns the number of events read (0 when caught up)."""
        if not self._loaded:
            await self.load()
        start = self.state.checkpoint
        events, after = await self.reader.read(start, max_events=self._settings.checkpoint_every_events)
        if after == start:
            return 0
        shed = self.state.backpressure
        async with self._database.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT position FROM hybrid_pipeline_checkpoints WHERE consumer = $1 FOR UPDATE", CONSUMER
            )
            committed = _checkpoint(row["position"]) if row is not None else Checkpoint()
            if committed != start:
                # Another pipeline moved on (or this one restarted): adopt its position, apply nothing.
                self.state.checkpoint = committed
                return 0
            # Atomicity, not durability, gives exactly-once: a commit lost in a PostgreSQL crash loses the
            # checkpoint together with the rows, and the batch is replayed. So skip the WAL flush wait.
            await conn.execute("SET LOCAL synchronous_commit = off")
            fresh = await _claim(conn, [event.id for event in events])
            batch = _Batch()
            for event in events:
                if event.id in fresh:
                    batch.add(event, shed=shed)
            await batch.write(conn)
            shed_count = batch.shed
            updated_at = await conn.fetchval(
                """UPDATE hybrid_pipeline_checkpoints SET position = $2::jsonb,
                       events_processed = events_processed + $3, updated_at = now()
                   WHERE consumer = $1 RETURNING updated_at""",
                CONSUMER,
                json.dumps({"seq": after.seq, "offset": after.offset}),
                len(fresh),
            )
        if after.seq > start.seq and self._settings.delete_consumed_telemetry:
            # Only after the commit: the files before the committed checkpoint can never be needed again.
            self.state.files_removed += await self.reader.remove_consumed(after)
        self.state.checkpoint = after
        self.state.checkpoint_updated_at = updated_at.isoformat()
        self.state.checkpoints_written += 1
        self.state.events_processed += len(fresh)
        self.state.duplicates_skipped += len(events) - len(fresh)
        self.state.shed_events += shed_count
        return len(events)

    async def run(self) -> None:
        """Consume until cancelled: batches back to back while behind, a poll interval when caught up."""
        self.state.running = True
        try:
            while True:
                try:
                    await self.refresh_backpressure()
                    read = await self.run_once()
                except StackError as exc:
                    logger.warning("learning pipeline batch failed; retrying", extra={"error_type": type(exc).__name__})
                    read = 0
                except Exception:  # top of the loop: a bug in one batch must not stop learning for good
                    logger.exception("learning pipeline batch crashed; retrying")
                    read = 0
                if read == 0:
                    await anyio.sleep(self._settings.pipeline_poll_seconds)
        finally:
            self.state.running = False

    async def drain(self) -> int:
        """Process until caught up (tests, CLI, benchmarks); returns the events read."""
        total = 0
        while True:
            await self.refresh_backpressure()
            read = await self.run_once()
            if read == 0:
                await self.refresh_backpressure()
                return total
            total += read


def _checkpoint(position: Any) -> Checkpoint:
    data = json.loads(position) if isinstance(position, str) else position
    return Checkpoint(int(data["seq"]), int(data["offset"]))


async def _claim(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Record the event ids; return those never seen before (the persistent dedup)."""
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO hybrid_processed_events (event_id) SELECT DISTINCT unnest($1::text[])
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
        list(ids),
    )
    return {row["event_id"] for row in rows}


@dataclass(slots=True)
class _Batch:
    """Rows one batch writes, gathered first so each table gets one pipelined `executemany`."""

    interactions: list[tuple[Any, ...]] = field(default_factory=list)
    examples: list[tuple[Any, ...]] = field(default_factory=list)
    tool_stats: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    shed: int = 0

    def add(self, event: TelemetryEvent, *, shed: bool) -> None:
        """Turn one fresh event into rows (or count it as shed)."""
        if event.type == "interaction":
            self._add_interaction(event)
        elif event.type == "ralph.task_finished":
            # Rolled up with the tool statistics (server "ralph", tool "task:<backend>"): calls = finished
            # tasks, errors = tasks that hit their iteration limit, duration_sum = iterations used. The
            # optimiser reads these to propose raising an iteration limit. Never shed: one event per task.
            backend = event.data.get("backend")
            iterations = event.data.get("iterations_done")
            if isinstance(backend, str):
                totals = self.tool_stats.setdefault(("ralph", f"task:{backend[:100]}"), [0, 0, 0.0])
                totals[0] += 1
                totals[1] += 1 if event.data.get("completion_reason") == "max_iterations" else 0
                totals[2] += float(iterations) if isinstance(iterations, int) else 0.0
        elif event.type == "tool_call":
            if shed:
                self.shed += 1
                return
            tool = event.data.get("tool")
            if isinstance(tool, str):
                duration = event.data.get("duration_seconds")
                totals = self.tool_stats.setdefault((event.source[:100], tool[:200]), [0, 0, 0.0])
                totals[0] += 1
                totals[1] += 0 if event.data.get("outcome", "ok") == "ok" else 1
                totals[2] += float(duration) if isinstance(duration, int | float) else 0.0

    def _add_interaction(self, event: TelemetryEvent) -> None:
        data = event.data
        query, response = data.get("query"), data.get("response")
        if not (isinstance(query, str) and isinstance(response, str) and query.strip()):
            return
        outcome = data.get("outcome") if data.get("outcome") in _OUTCOMES else None
        feedback_raw = data.get("user_feedback")
        feedback = (
            max(-1.0, min(1.0, float(feedback_raw)))
            if isinstance(feedback_raw, int | float) and not isinstance(feedback_raw, bool)
            else None
        )
        secret = bool(data.get("secret")) or detect_secret(query + "\n" + response) is not None
        complexity = estimate_complexity(query)
        score = (
            value_score(
                outcome=outcome,
                feedback=feedback,
                reusability=reusability(query, response),
                complexity=complexity,
                novelty=0.5,
            )
            if outcome is not None
            else None
        )
        interaction_id = uuid.uuid5(EVENT_NAMESPACE, event.id)
        tokens = data.get("tokens_used")
        latency = data.get("latency_ms")
        self.interactions.append(
            (
                interaction_id,
                query,
                response,
                str(data.get("agent_type") or event.source)[:50],
                str(data.get("model_used") or "unknown")[:200],
                tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
                float(latency) if isinstance(latency, int | float) and not isinstance(latency, bool) else None,
                classify_task(query),
                complexity,
                secret,
                outcome,
                feedback,
                score,
            )
        )
        if worth_training(outcome, feedback, secret):
            messages = example_messages(query, response)
            self.examples.append((content_hash(messages), json.dumps(messages), interaction_id, event.id, score))

    async def write(self, conn: Connection) -> None:
        """Insert every gathered row inside the caller's transaction."""
        if self.interactions:
            await conn.executemany(
                """INSERT INTO hybrid_interactions (id, source, query, response, agent_type, model_used, tokens_used,
                       latency_ms, task_type, complexity, secret, outcome, user_feedback, outcome_at, value_score)
                   VALUES ($1, 'telemetry', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                           CASE WHEN $11::text IS NULL THEN NULL ELSE now() END, $13)
                   ON CONFLICT (id) DO NOTHING""",
                self.interactions,
            )
        if self.examples:
            await conn.executemany(
                """INSERT INTO hybrid_training_examples (content_hash, messages, interaction_id, event_id, value_score)
                   VALUES ($1, $2::jsonb, $3, $4, $5) ON CONFLICT (content_hash) DO NOTHING""",
                self.examples,
            )
        if self.tool_stats:
            await conn.executemany(
                """INSERT INTO hybrid_tool_stats (server, tool, calls, errors, duration_sum) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (server, tool) DO UPDATE SET calls = hybrid_tool_stats.calls + EXCLUDED.calls,
                       errors = hybrid_tool_stats.errors + EXCLUDED.errors,
                       duration_sum = hybrid_tool_stats.duration_sum + EXCLUDED.duration_sum""",
                [(server, tool, int(c), int(e), d) for (server, tool), (c, e, d) in self.tool_stats.items()],
            )
