"""Hybrid's SQL: interactions and outcomes, routing decisions and spend, thresholds, patterns, the telemetry
pipeline's batches and checkpoint, the training dataset's exports, tool statistics and proposals.

Functions take the `Database` (the harness lifespan owns it) and return domain objects; the decisions they
write are made by the pure modules (`learning`, `routing`, `pipeline`'s batch). A transaction that needs a
decision made on rows it has just locked takes it as a plain function, called while the locks are held (no I/O
in it). Connection failures become `DependencyUnavailable` in the pool; every insert that can meet an existing
row says what happens then (`ON CONFLICT`), so no constraint error reaches a caller. A telemetry row holding a
value PostgreSQL cannot store (`asyncpg.DataError`) is left out of its batch instead of failing it forever.
"""

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from mcp_servers.hybrid.learning import InteractionRecord, NewInteraction, OutcomeAssessment, TrainingExample
from mcp_servers.hybrid.models import TrainingFormat
from mcp_servers.hybrid.routing import Attempt
from mcp_servers.shared.errors import NotFound
from mcp_servers.shared.llm.port import Completion
from mcp_servers.shared.postgres.pool import Connection, Database
from mcp_servers.shared.telemetry import Checkpoint

_NO_INTERACTION: Final = "use the id returned by track_interaction or route_query"


# -- interactions and outcomes ---------------------------------------------------------------------------------


async def insert_interaction(database: Database, interaction: NewInteraction) -> None:
    """Store an interaction reported through track_interaction (its outcome comes later)."""
    await database.execute(
        """INSERT INTO hybrid_interactions (id, source, query, response, agent_type, model_used, context_ids,
               tokens_used, latency_ms, task_type, complexity, secret)
           VALUES ($1, 'track_interaction', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        interaction.id,
        interaction.query,
        interaction.response,
        interaction.agent_type,
        interaction.model_used,
        list(interaction.context_ids),
        interaction.tokens_used,
        interaction.latency_ms,
        interaction.task_type,
        interaction.complexity,
        interaction.secret,
    )


async def interaction_query(database: Database, interaction_id: uuid.UUID) -> str:
    """The query of a stored interaction, or NotFound."""
    query: str | None = await database.fetchval("SELECT query FROM hybrid_interactions WHERE id = $1", interaction_id)
    if query is None:
        raise NotFound(f"no interaction {interaction_id}; {_NO_INTERACTION}")
    return query


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What `record_outcome` wrote: the interaction as it was before, the assessment, and its effects."""

    interaction: InteractionRecord
    assessment: OutcomeAssessment
    training_example_added: bool
    threshold: float | None


def _interaction(row: asyncpg.Record) -> InteractionRecord:
    return InteractionRecord(
        id=row["id"],
        query=row["query"],
        response=row["response"],
        task_type=row["task_type"],
        complexity=_real(row["complexity"]),
        secret=bool(row["secret"]),
        outcome=row["outcome"],
        pattern_id=row["pattern_id"],
        routed_kind=row["routed_kind"],
        user_feedback=None if row["user_feedback"] is None else _real(row["user_feedback"]),
        value_score=None if row["value_score"] is None else _real(row["value_score"]),
    )


def _real(value: float) -> float:
    """A `real` (float4) column as the float it was written as: 0.6 reads back as 0.6000000238418579 otherwise."""
    return round(float(value), 6)


async def record_outcome(
    database: Database, interaction_id: uuid.UUID, assess: Callable[[InteractionRecord], OutcomeAssessment]
) -> RecordedOutcome:
    """Lock the interaction, assess it, store the outcome, its training example and threshold change.

    One transaction: the interaction row is locked before `assess` sees it, and the threshold row before it is
    changed, so concurrent outcomes are applied one after another. The example is deduplicated by content hash.

    Raises:
        NotFound: no interaction has this id.
    """
    async with database.transaction() as conn:
        row = await conn.fetchrow(
            """SELECT i.*, d.backend_kind AS routed_kind FROM hybrid_interactions i
               LEFT JOIN hybrid_routing_decisions d ON d.id = i.decision_id WHERE i.id = $1 FOR UPDATE OF i""",
            interaction_id,
        )
        if row is None:
            raise NotFound(f"no interaction {interaction_id}; {_NO_INTERACTION}")
        interaction = _interaction(row)
        assessment = assess(interaction)
        if assessment.repeat:
            return RecordedOutcome(interaction, assessment, False, None)
        await conn.execute(
            """UPDATE hybrid_interactions SET outcome = $2, user_feedback = $3, outcome_at = now(), value_score = $4
               WHERE id = $1""",
            interaction_id,
            assessment.outcome,
            assessment.feedback,
            assessment.value_score,
        )
        added = False
        if assessment.example is not None:
            added = await _add_example(conn, assessment.example, interaction_id, assessment.value_score)
        threshold: float | None = None
        change = assessment.threshold
        if change is not None:
            await conn.execute(
                """INSERT INTO hybrid_thresholds (task_type, complexity_threshold) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                change.task_type,
                change.initial,
            )
            current = await conn.fetchval(
                "SELECT complexity_threshold FROM hybrid_thresholds WHERE task_type = $1 FOR UPDATE", change.task_type
            )
            threshold = round(change.apply(_real(current)), 6)
            await conn.execute(
                """UPDATE hybrid_thresholds SET complexity_threshold = $2, samples = samples + 1, updated_at = now()
                   WHERE task_type = $1""",
                change.task_type,
                threshold,
            )
    return RecordedOutcome(interaction, assessment, added, threshold)


async def _add_example(
    conn: Connection, example: TrainingExample, interaction_id: uuid.UUID, value_score: float
) -> bool:
    added = await conn.fetchval(
        """INSERT INTO hybrid_training_examples (content_hash, messages, interaction_id, event_id, value_score)
           VALUES ($1, $2::jsonb, $3, NULL, $4) ON CONFLICT (content_hash) DO NOTHING RETURNING id""",
        example.content_hash,
        example.messages_json,
        interaction_id,
        value_score,
    )
    return added is not None


async def link_pattern(database: Database, interaction_id: uuid.UUID, pattern_id: uuid.UUID) -> None:
    """Link an interaction to the pattern it produced or strengthened."""
    await database.execute("UPDATE hybrid_interactions SET pattern_id = $2 WHERE id = $1", interaction_id, pattern_id)


# -- routing: thresholds, spend, decisions ------------------------------------------------------------------------


async def load_thresholds(database: Database) -> dict[str, float]:
    """Every adapted threshold by task type (task types without a row use the configured initial value)."""
    rows = await database.fetch("SELECT task_type, complexity_threshold FROM hybrid_thresholds")
    return {row["task_type"]: _real(row["complexity_threshold"]) for row in rows}


async def spent_today(database: Database) -> float:
    """What all backends were charged today (UTC)."""
    spent = await database.fetchval(
        "SELECT coalesce(sum(spent), 0) FROM hybrid_budget WHERE day = (now() AT TIME ZONE 'utc')::date"
    )
    return float(spent or 0)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """How a request was routed, whether or not a backend answered."""

    task_type: str
    prefer: str
    reason: str
    attempts: tuple[Attempt, ...]
    complexity: float
    threshold: float
    prompt_tokens_estimate: int
    secret: bool


@dataclass(frozen=True, slots=True)
class RoutedAnswer:
    """The backend that answered, what it was charged, and the interaction to record (None: record none)."""

    backend: str
    backend_kind: str
    completion: Completion
    usage_reported: bool
    cost: float
    charged: bool
    interaction_id: uuid.UUID | None
    query: str


def _attempts_json(attempts: Sequence[Attempt]) -> str:
    return json.dumps([{"backend": a.backend, "outcome": a.outcome, "reason": a.reason} for a in attempts])


# The decision, the day's spend and the interaction in ONE statement: one round trip, atomic (one implicit
# transaction). $24 sets synchronous_commit for this statement's transaction only: "on" (default) waits for the
# WAL flush; "off" (hybrid.async_commit_records) saves that wait, and a PostgreSQL crash may then lose the last
# fraction of a second of records, atomically.
_RECORD_SUCCESS: Final = """
WITH commit_mode AS (SELECT set_config('synchronous_commit', $24::text, true)),
decision AS (
    INSERT INTO hybrid_routing_decisions (task_type, prefer, backend, backend_kind, reason, attempts, complexity,
        threshold, prompt_tokens_estimate, prompt_tokens, completion_tokens, usage_reported, cost, latency_seconds,
        secret, ok)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15, true)
    RETURNING id
),
spend AS (
    INSERT INTO hybrid_budget (day, backend, spent, calls, unreported_calls)
    SELECT (now() AT TIME ZONE 'utc')::date, $3, $13, 1, CASE WHEN $12::boolean THEN 0 ELSE 1 END
    WHERE $16::boolean
    ON CONFLICT (day, backend) DO UPDATE SET spent = hybrid_budget.spent + EXCLUDED.spent,
        calls = hybrid_budget.calls + 1, unreported_calls = hybrid_budget.unreported_calls + EXCLUDED.unreported_calls
),
interaction AS (
    INSERT INTO hybrid_interactions (id, source, query, response, agent_type, model_used, tokens_used, latency_ms,
        task_type, complexity, secret, decision_id)
    SELECT $17::uuid, 'route_query', $19, $20, $4, $21, $22, $23, $1, $7, $15, decision.id
    FROM decision WHERE $18::boolean
)
SELECT decision.id FROM decision, commit_mode
"""


async def record_route_success(
    database: Database, decision: RouteDecision, answer: RoutedAnswer, *, synchronous_commit: bool
) -> int:
    """Write the decision, charge the day's spend and store the interaction, atomically; returns the decision id."""
    completion = answer.completion
    decision_id = await database.fetchval(
        _RECORD_SUCCESS,
        decision.task_type,
        decision.prefer,
        answer.backend,
        answer.backend_kind,
        decision.reason,
        _attempts_json(decision.attempts),
        decision.complexity,
        decision.threshold,
        decision.prompt_tokens_estimate,
        completion.prompt_tokens,
        completion.completion_tokens,
        answer.usage_reported,
        answer.cost,
        completion.latency_seconds,
        decision.secret,
        answer.charged,
        answer.interaction_id or uuid.UUID(int=0),
        answer.interaction_id is not None,
        answer.query,
        completion.text,
        completion.model,
        completion.total_tokens,
        completion.latency_seconds * 1000,
        "on" if synchronous_commit else "off",
    )
    return int(decision_id)


async def record_route_failure(database: Database, decision: RouteDecision) -> None:
    """Write a decision no backend answered."""
    await database.execute(
        """INSERT INTO hybrid_routing_decisions (task_type, prefer, backend, backend_kind, reason, attempts,
               complexity, threshold, prompt_tokens_estimate, secret, ok)
           VALUES ($1, $2, NULL, NULL, $3, $4::jsonb, $5, $6, $7, $8, false)""",
        decision.task_type,
        decision.prefer,
        decision.reason,
        _attempts_json(decision.attempts),
        decision.complexity,
        decision.threshold,
        decision.prompt_tokens_estimate,
        decision.secret,
    )


# -- patterns -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPattern:
    """A pattern extracted from one interaction, ready to store."""

    id: uuid.UUID
    problem_type: str
    approach: str
    skills: tuple[str, ...]
    pattern: str
    extractor: str
    value_score: float
    interaction_id: uuid.UUID


async def merge_pattern(database: Database, existing: uuid.UUID, pattern: NewPattern) -> bool:
    """Strengthen `existing` with `pattern` (support, skills, the higher value); False if it no longer exists."""
    merged = await database.fetchval(
        """UPDATE hybrid_patterns SET support = support + 1, updated_at = now(),
               value_score = greatest(value_score, $2),
               skills = ARRAY(SELECT DISTINCT unnest(skills || $3::text[])),
               interaction_ids = CASE WHEN $4 = ANY(interaction_ids) THEN interaction_ids
                                      ELSE interaction_ids || $4 END
           WHERE id = $1 RETURNING id""",
        existing,
        pattern.value_score,
        list(pattern.skills),
        pattern.interaction_id,
    )
    return merged is not None


async def insert_pattern(database: Database, pattern: NewPattern) -> None:
    """Store a new pattern."""
    await database.execute(
        """INSERT INTO hybrid_patterns (id, problem_type, approach, skills, pattern, extractor, value_score,
               interaction_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        pattern.id,
        pattern.problem_type,
        pattern.approach,
        list(pattern.skills),
        pattern.pattern,
        pattern.extractor,
        pattern.value_score,
        [pattern.interaction_id],
    )


# -- rebuilding the knowledge collections from PostgreSQL ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnowledgeSources:
    """How many rows each Hybrid collection should hold a point for (see `hybrid/rebuild.py`)."""

    tracked_interactions: int
    solved_errors: int
    patterns: int
    best_practices: int


@dataclass(frozen=True, slots=True)
class InteractionText:
    """The parts of an interaction its indexed text and payload are made of."""

    id: uuid.UUID
    query: str
    response: str
    agent_type: str
    model_used: str


@dataclass(frozen=True, slots=True)
class PatternText:
    """The parts of a pattern its indexed text and payload are made of."""

    id: uuid.UUID
    problem_type: str
    approach: str
    skills: tuple[str, ...]
    pattern: str
    extractor: str


def _contains_any(hints: Sequence[str]) -> list[str]:
    return [f"%{hint}%" for hint in hints]


# What each collection is written from (service.track / update_outcome, patterns.store_pattern): tracked
# interactions without secrets; successful non-secret interactions whose query reads like an error; every pattern;
# patterns valued `best_min_value` or more.
_TRACKED = "source = 'track_interaction' AND NOT secret"
_SOLVED = "outcome = 'success' AND NOT secret AND query ILIKE ANY($1::text[])"


async def knowledge_sources(
    database: Database, *, error_hints: Sequence[str], best_min_value: float
) -> KnowledgeSources:
    """Count the rows behind each collection (one round trip)."""
    row = await database.fetchrow(
        f"""SELECT (SELECT count(*) FROM hybrid_interactions WHERE {_TRACKED}) AS tracked,
                   (SELECT count(*) FROM hybrid_interactions WHERE {_SOLVED}) AS solved,
                   (SELECT count(*) FROM hybrid_patterns) AS patterns,
                   (SELECT count(*) FROM hybrid_patterns WHERE value_score >= $2) AS best""",
        _contains_any(error_hints),
        best_min_value,
    )
    assert row is not None
    return KnowledgeSources(row["tracked"], row["solved"], row["patterns"], row["best"])


def _interaction_texts(rows: Sequence[asyncpg.Record]) -> list[InteractionText]:
    return [InteractionText(r["id"], r["query"], r["response"], r["agent_type"], r["model_used"]) for r in rows]


async def tracked_interactions(database: Database, *, after: uuid.UUID | None, limit: int) -> list[InteractionText]:
    """A page of tracked, non-secret interactions in id order, after `after`."""
    rows = await database.fetch(
        f"""SELECT id, query, response, agent_type, model_used FROM hybrid_interactions
           WHERE {_TRACKED} AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2""",
        after,
        limit,
    )
    return _interaction_texts(rows)


async def solved_errors(
    database: Database, *, error_hints: Sequence[str], after: uuid.UUID | None, limit: int
) -> list[InteractionText]:
    """A page of successful, non-secret interactions whose query mentions an error hint, in id order."""
    rows = await database.fetch(
        f"""SELECT id, query, response, agent_type, model_used FROM hybrid_interactions
           WHERE {_SOLVED} AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3""",
        _contains_any(error_hints),
        after,
        limit,
    )
    return _interaction_texts(rows)


async def pattern_texts(
    database: Database, *, min_value: float | None, after: uuid.UUID | None, limit: int
) -> list[PatternText]:
    """A page of patterns (valued at least `min_value` when given) in id order."""
    rows = await database.fetch(
        """SELECT id, problem_type, approach, skills, pattern, extractor FROM hybrid_patterns
           WHERE ($1::real IS NULL OR value_score >= $1) AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3""",
        min_value,
        after,
        limit,
    )
    return [
        PatternText(r["id"], r["problem_type"], r["approach"], tuple(r["skills"]), r["pattern"], r["extractor"])
        for r in rows
    ]


# -- the telemetry pipeline ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A consumer's committed position in the telemetry stream."""

    position: Checkpoint
    events_processed: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventInteraction:
    """An interaction taken from a telemetry event (its id derives from the event id, so replays collide)."""

    id: uuid.UUID
    query: str
    response: str
    agent_type: str
    model_used: str
    tokens_used: int | None
    latency_ms: float | None
    task_type: str
    complexity: float
    secret: bool
    outcome: str | None
    feedback: float | None
    value_score: float | None


@dataclass(frozen=True, slots=True)
class EventExample:
    """A training example taken from a telemetry event."""

    example: TrainingExample
    interaction_id: uuid.UUID
    event_id: str
    value_score: float | None


@dataclass(frozen=True, slots=True)
class ToolStatsDelta:
    """What one batch adds to a tool's rolled-up statistics."""

    server: str
    tool: str
    calls: int
    errors: int
    duration_sum: float


@dataclass(frozen=True, slots=True)
class BatchRows:
    """Everything one batch of events writes."""

    interactions: Sequence[EventInteraction]
    examples: Sequence[EventExample]
    tool_stats: Sequence[ToolStatsDelta]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Whether a batch was applied, the position now committed, when (None when not applied), and how many of its
    rows were left out because PostgreSQL cannot store one of their values."""

    applied: bool
    committed: Checkpoint
    fresh_events: int = 0
    updated_at: datetime | None = None
    rejected: int = 0


def _checkpoint(position: Any) -> Checkpoint:
    data = json.loads(position) if isinstance(position, str) else position
    return Checkpoint(int(data["seq"]), int(data["offset"]))


def _position(checkpoint: Checkpoint) -> str:
    return json.dumps({"seq": checkpoint.seq, "offset": checkpoint.offset})


async def load_checkpoint(database: Database, consumer: str) -> StoredCheckpoint:
    """The consumer's committed position, creating it at the start of the stream if absent."""
    async with database.transaction() as conn:
        await conn.execute(
            """INSERT INTO hybrid_pipeline_checkpoints (consumer, position) VALUES ($1, $2::jsonb)
               ON CONFLICT (consumer) DO NOTHING""",
            consumer,
            _position(Checkpoint()),
        )
        row = await conn.fetchrow(
            "SELECT position, events_processed, updated_at FROM hybrid_pipeline_checkpoints WHERE consumer = $1",
            consumer,
        )
    assert row is not None
    return StoredCheckpoint(_checkpoint(row["position"]), int(row["events_processed"]), row["updated_at"])


async def apply_batch(
    database: Database,
    consumer: str,
    *,
    start: Checkpoint,
    after: Checkpoint,
    event_ids: Sequence[str],
    build: Callable[[set[str]], BatchRows],
) -> BatchResult:
    """Apply the events between `start` and `after` exactly once, in one transaction.

    The checkpoint row is locked and compared with `start` first: if another pipeline (or this one before a
    restart) moved it, nothing is applied and the committed position comes back. Otherwise the event ids never
    seen before are recorded (the persistent dedup), `build` turns those into rows, and the rows and the new
    checkpoint commit together. A row holding a value PostgreSQL cannot store is left out and counted.
    """
    async with database.transaction() as conn:
        row = await conn.fetchrow(
            "SELECT position FROM hybrid_pipeline_checkpoints WHERE consumer = $1 FOR UPDATE", consumer
        )
        committed = _checkpoint(row["position"]) if row is not None else Checkpoint()
        if committed != start:
            return BatchResult(applied=False, committed=committed)
        # Atomicity, not durability, gives exactly-once: a commit lost in a PostgreSQL crash loses the
        # checkpoint together with the rows, and the batch is replayed. So skip the WAL flush wait.
        await conn.execute("SET LOCAL synchronous_commit = off")
        fresh = await _claim(conn, event_ids)
        rejected = await _write_rows(conn, build(fresh))
        updated_at = await conn.fetchval(
            """UPDATE hybrid_pipeline_checkpoints SET position = $2::jsonb,
                   events_processed = events_processed + $3, updated_at = now()
               WHERE consumer = $1 RETURNING updated_at""",
            consumer,
            _position(after),
            len(fresh),
        )
    return BatchResult(applied=True, committed=after, fresh_events=len(fresh), updated_at=updated_at, rejected=rejected)


async def _claim(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Record the event ids; return those never seen before."""
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO hybrid_processed_events (event_id) SELECT DISTINCT unnest($1::text[])
           ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
        list(ids),
    )
    return {row["event_id"] for row in rows}


_INSERT_EVENT_INTERACTION: Final = """
INSERT INTO hybrid_interactions (id, source, query, response, agent_type, model_used, tokens_used, latency_ms,
    task_type, complexity, secret, outcome, user_feedback, outcome_at, value_score)
VALUES ($1, 'telemetry', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
        CASE WHEN $11::text IS NULL THEN NULL ELSE now() END, $13)
ON CONFLICT (id) DO NOTHING
"""
_INSERT_EVENT_EXAMPLE: Final = """
INSERT INTO hybrid_training_examples (content_hash, messages, interaction_id, event_id, value_score)
VALUES ($1, $2::jsonb, $3, $4, $5) ON CONFLICT (content_hash) DO NOTHING
"""
_ADD_TOOL_STATS: Final = """
INSERT INTO hybrid_tool_stats (server, tool, calls, errors, duration_sum) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (server, tool) DO UPDATE SET calls = hybrid_tool_stats.calls + EXCLUDED.calls,
    errors = hybrid_tool_stats.errors + EXCLUDED.errors,
    duration_sum = hybrid_tool_stats.duration_sum + EXCLUDED.duration_sum
"""


def _statements(rows: BatchRows) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Each table's statement with its argument tuples (tables with no rows left out)."""
    statements: list[tuple[str, list[tuple[Any, ...]]]] = [
        (
            _INSERT_EVENT_INTERACTION,
            [
                (
                    i.id,
                    i.query,
                    i.response,
                    i.agent_type,
                    i.model_used,
                    i.tokens_used,
                    i.latency_ms,
                    i.task_type,
                    i.complexity,
                    i.secret,
                    i.outcome,
                    i.feedback,
                    i.value_score,
                )
                for i in rows.interactions
            ],
        ),
        (
            _INSERT_EVENT_EXAMPLE,
            [
                (e.example.content_hash, e.example.messages_json, e.interaction_id, e.event_id, e.value_score)
                for e in rows.examples
            ],
        ),
        (_ADD_TOOL_STATS, [(s.server, s.tool, s.calls, s.errors, s.duration_sum) for s in rows.tool_stats]),
    ]
    return [(statement, arguments) for statement, arguments in statements if arguments]


async def _write_rows(conn: Connection, rows: BatchRows) -> int:
    """One pipelined `executemany` per table; returns how many rows were left out as unstorable."""
    statements = _statements(rows)
    try:
        async with conn.transaction():  # a savepoint: only this attempt is undone if a value cannot be stored
            for statement, arguments in statements:
                await conn.executemany(statement, arguments)
        return 0
    except asyncpg.DataError:
        pass
    # A value PostgreSQL cannot store (NUL, an unpaired surrogate, a count past int32) in one event would fail
    # the batch on every replay and stop learning for good: write row by row and leave such rows out.
    rejected: set[uuid.UUID] = set()  # interactions left out: their examples are left out with them
    count = 0
    for statement, arguments in statements:
        for argument in arguments:
            if statement is _INSERT_EVENT_EXAMPLE and argument[2] in rejected:
                count += 1
                continue
            try:
                async with conn.transaction():
                    await conn.execute(statement, *argument)
            except asyncpg.DataError:
                count += 1
                if statement is _INSERT_EVENT_INTERACTION:
                    rejected.add(argument[0])
    return count


# -- the training dataset's exports -------------------------------------------------------------------------------

_DATASET_LOCK_BASE: Final = int.from_bytes(b"hybrdset", "big") & 0x7FFF_FFFF_FFFF_FF00
_DATASET_LOCK_KEYS: Final[Mapping[TrainingFormat, int]] = {"openai": 1, "sharegpt": 2}


@dataclass(frozen=True, slots=True)
class ExportState:
    """What a format's file holds: examples up to `last_example_id`, `examples` of them in `bytes` bytes."""

    last_example_id: int
    examples: int
    bytes: int


@dataclass(frozen=True, slots=True)
class StoredExample:
    """A training example as exported, in id order."""

    id: int
    messages: list[dict[str, str]]


def _messages(value: Any) -> list[dict[str, str]]:
    data = json.loads(value) if isinstance(value, str) else value
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in data]


class DatasetExport:
    """One format's export inside its transaction, which holds the format's advisory lock until it ends."""

    def __init__(self, conn: Connection, fmt: TrainingFormat, state: ExportState) -> None:
        self._conn = conn
        self._format = fmt
        self.state = state

    async def examples_after(self, last_example_id: int, limit: int) -> list[StoredExample]:
        """Up to `limit` examples after `last_example_id`, in id order."""
        rows = await self._conn.fetch(
            "SELECT id, messages FROM hybrid_training_examples WHERE id > $1 ORDER BY id LIMIT $2",
            last_example_id,
            limit,
        )
        return [StoredExample(int(row["id"]), _messages(row["messages"])) for row in rows]

    async def reset(self) -> None:
        """Record the file as empty (it is rebuilt from the first example)."""
        await self._conn.execute(
            "UPDATE hybrid_dataset_exports SET last_example_id = 0, examples = 0, bytes = 0 WHERE format = $1",
            self._format,
        )
        self.state = ExportState(0, 0, 0)

    async def commit(self, state: ExportState) -> None:
        """Record what the file now holds (committed when the export's block ends)."""
        await self._conn.execute(
            """UPDATE hybrid_dataset_exports SET last_example_id = $2, examples = $3, bytes = $4,
                   updated_at = now() WHERE format = $1""",
            self._format,
            state.last_example_id,
            state.examples,
            state.bytes,
        )
        self.state = state


@asynccontextmanager
async def dataset_export(database: Database, fmt: TrainingFormat) -> AsyncIterator[DatasetExport]:
    """A transaction holding the format's advisory lock (concurrent exports of a format queue), with its state."""
    async with database.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _DATASET_LOCK_BASE + _DATASET_LOCK_KEYS[fmt])
        await conn.execute("INSERT INTO hybrid_dataset_exports (format) VALUES ($1) ON CONFLICT DO NOTHING", fmt)
        row = await conn.fetchrow(
            "SELECT last_example_id, examples, bytes FROM hybrid_dataset_exports WHERE format = $1", fmt
        )
        assert row is not None
        yield DatasetExport(
            conn, fmt, ExportState(int(row["last_example_id"]), int(row["examples"]), int(row["bytes"]))
        )


# -- learning statistics ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LearningCounts:
    """Counts for learning_stats, read on one connection."""

    interactions: int
    interactions_with_outcome: int
    patterns: int
    training_examples: int
    dedup_events: int
    routing_decisions: int
    proposals: int
    spent_today: float
    routing_by_reason: dict[str, int]
    dataset_files: dict[str, int]
    events_processed: int


_COUNTS: Final = """
SELECT
  (SELECT count(*) FROM hybrid_interactions) AS interactions,
  (SELECT count(*) FROM hybrid_interactions WHERE outcome IS NOT NULL) AS with_outcome,
  (SELECT count(*) FROM hybrid_patterns) AS patterns,
  (SELECT count(*) FROM hybrid_training_examples) AS examples,
  (SELECT count(*) FROM hybrid_processed_events) AS dedup_events,
  (SELECT count(*) FROM hybrid_routing_decisions) AS decisions,
  (SELECT count(*) FROM hybrid_proposals) AS proposals,
  (SELECT coalesce(sum(spent), 0) FROM hybrid_budget WHERE day = (now() AT TIME ZONE 'utc')::date) AS spent
"""


async def learning_counts(database: Database, consumer: str) -> LearningCounts:
    """Interactions, patterns, examples, decisions by reason, exports and the consumer's durable event count."""
    async with database.connection() as conn:
        counts = await conn.fetchrow(_COUNTS)
        reasons = await conn.fetch("SELECT reason, count(*) AS n FROM hybrid_routing_decisions GROUP BY reason")
        exports = await conn.fetch("SELECT format, examples FROM hybrid_dataset_exports")
        durable = await conn.fetchval(
            "SELECT events_processed FROM hybrid_pipeline_checkpoints WHERE consumer = $1", consumer
        )
    assert counts is not None
    return LearningCounts(
        interactions=counts["interactions"],
        interactions_with_outcome=counts["with_outcome"],
        patterns=counts["patterns"],
        training_examples=counts["examples"],
        dedup_events=counts["dedup_events"],
        routing_decisions=counts["decisions"],
        proposals=counts["proposals"],
        spent_today=float(counts["spent"]),
        routing_by_reason={row["reason"]: row["n"] for row in reasons},
        dataset_files={row["format"]: row["examples"] for row in exports},
        events_processed=int(durable) if durable is not None else 0,
    )


# -- tool statistics and optimisation proposals -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolStats:
    """A tool's rolled-up calls (for Ralph task rows: finished tasks, limit hits, mean iterations)."""

    server: str
    tool: str
    calls: int
    errors: int
    mean_seconds: float


async def tool_stats(database: Database, *, min_calls: int) -> list[ToolStats]:
    """Tools with at least `min_calls` calls, by server and tool."""
    rows = await database.fetch(
        """SELECT server, tool, calls, errors, duration_sum / greatest(calls, 1) AS mean_seconds
           FROM hybrid_tool_stats WHERE calls >= $1 ORDER BY server, tool""",
        min_calls,
    )
    return [
        ToolStats(row["server"], row["tool"], int(row["calls"]), int(row["errors"]), float(row["mean_seconds"]))
        for row in rows
    ]


async def insert_proposal(database: Database, *, kind: str, subject: str, description: str) -> int | None:
    """Record a proposal as pending; its id, or None if (kind, subject) was proposed before."""
    inserted: int | None = await database.fetchval(
        """INSERT INTO hybrid_proposals (kind, subject, description, status) VALUES ($1, $2, $3, 'pending')
           ON CONFLICT (kind, subject) DO NOTHING RETURNING id""",
        kind,
        subject,
        description,
    )
    return inserted


async def set_proposal_status(database: Database, proposal_id: int, status: str, ralph_task_id: str | None) -> None:
    """Record what became of a proposal: submitted (with Ralph's task id), skipped or failed."""
    await database.execute(
        "UPDATE hybrid_proposals SET status = $2, ralph_task_id = $3 WHERE id = $1", proposal_id, status, ralph_task_id
    )
