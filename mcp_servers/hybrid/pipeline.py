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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from mcp_servers.hybrid import store
from mcp_servers.hybrid.learning import reusability, training_example, value_score, worth_training
from mcp_servers.hybrid.routing import classify_task, detect_secret, estimate_complexity
from mcp_servers.shared.config import HybridSettings
from mcp_servers.shared.errors import StackError
from mcp_servers.shared.files import write_atomically
from mcp_servers.shared.postgres.pool import Database
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
        stored = await store.load_checkpoint(self._database, CONSUMER)
        self.state.checkpoint = stored.position
        self.state.checkpoint_updated_at = stored.updated_at.isoformat()
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
        batch = _Batch()

        def build(fresh: set[str]) -> store.BatchRows:
            for event in events:
                if event.id in fresh:
                    batch.add(event, shed=shed)
            return batch.rows()

        result = await store.apply_batch(
            self._database,
            CONSUMER,
            start=start,
            after=after,
            event_ids=[event.id for event in events],
            build=build,
        )
        if not result.applied:
            # Another pipeline moved on (or this one restarted): adopt its position, apply nothing.
            self.state.checkpoint = result.committed
            return 0
        if result.rejected:
            logger.warning("telemetry rows left out: a value cannot be stored", extra={"rows": result.rejected})
        if after.seq > start.seq and self._settings.delete_consumed_telemetry:
            # Only after the commit: the files before the committed checkpoint can never be needed again.
            self.state.files_removed += await self.reader.remove_consumed(after)
        assert result.updated_at is not None
        self.state.checkpoint = after
        self.state.checkpoint_updated_at = result.updated_at.isoformat()
        self.state.checkpoints_written += 1
        self.state.events_processed += result.fresh_events
        self.state.duplicates_skipped += len(events) - result.fresh_events
        self.state.shed_events += batch.shed
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


@dataclass(slots=True)
class _Batch:
    """Rows one batch writes, gathered first so each table gets one pipelined `executemany`."""

    interactions: list[store.EventInteraction] = field(default_factory=list)
    examples: list[store.EventExample] = field(default_factory=list)
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
            store.EventInteraction(
                id=interaction_id,
                query=query,
                response=response,
                agent_type=str(data.get("agent_type") or event.source)[:50],
                model_used=str(data.get("model_used") or "unknown")[:200],
                tokens_used=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
                latency_ms=(
                    float(latency) if isinstance(latency, int | float) and not isinstance(latency, bool) else None
                ),
                task_type=classify_task(query),
                complexity=complexity,
                secret=secret,
                outcome=outcome,
                feedback=feedback,
                value_score=score,
            )
        )
        if worth_training(outcome, feedback, secret):
            self.examples.append(store.EventExample(training_example(query, response), interaction_id, event.id, score))

    def rows(self) -> store.BatchRows:
        """The gathered rows, tool statistics summed per (server, tool)."""
        return store.BatchRows(
            self.interactions,
            self.examples,
            [
                store.ToolStatsDelta(server, tool, int(calls), int(errors), duration)
                for (server, tool), (calls, errors, duration) in self.tool_stats.items()
            ],
        )
