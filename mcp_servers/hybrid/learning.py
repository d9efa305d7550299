"""Interactions and their outcomes: tracking, the value score, training examples, threshold adaptation.

The value score weighs outcome 40 %, user feedback 20 %, reusability 20 %, complexity 10 % and novelty 10 %;
interactions scoring at least `pattern_min_value` become (or strengthen) patterns. Training examples are
deduplicated by a hash of their canonical messages, so the dataset never holds the same example twice.
"""

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcp_servers.hybrid.routing import BackendKind, adapt_threshold, classify_task, detect_secret, estimate_complexity
from mcp_servers.shared.config import HybridSettings
from mcp_servers.shared.errors import NotFound
from mcp_servers.shared.postgres.pool import Connection, Database

OutcomeName = Literal["success", "partial", "failure"]

WEIGHTS = {"outcome": 0.4, "feedback": 0.2, "reusability": 0.2, "complexity": 0.1, "novelty": 0.1}
_OUTCOME_SCORE = {"success": 1.0, "partial": 0.5, "failure": 0.0}

_STEPS = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*])\s+")
_SPECIFICS = re.compile(r"(?:/[\w.-]+){2,}|\b[0-9a-f]{12,}\b|\b\d{4}-\d{2}-\d{2}\b")


def outcome_score(outcome: str | None) -> float:
    """success 1, partial 0.5, failure 0; unknown 0.25 (nothing learned yet)."""
    return _OUTCOME_SCORE.get(outcome or "", 0.25)


def reusability(query: str, response: str) -> float:
    """0..1: answers with code, steps or general guidance reuse well; ones full of ids, paths and dates do not."""
    score = 0.2
    if "```" in response:
        score += 0.3
    if len(_STEPS.findall(response)) >= 2:
        score += 0.2
    if 80 <= len(response) <= 4000:
        score += 0.2
    if re.search(r"\b(?:always|never|prefer|avoid|use|should|pattern|instead)\b", response, re.IGNORECASE):
        score += 0.1
    specifics = len(_SPECIFICS.findall(query + "\n" + response))
    score -= min(specifics * 0.05, 0.3)
    return max(0.0, min(score, 1.0))


def value_score(
    *, outcome: str | None, feedback: float | None, reusability: float, complexity: float, novelty: float
) -> float:
    """The weighted value of an interaction, 0..1."""
    feedback_score = 0.5 if feedback is None else (feedback + 1) / 2
    score = (
        WEIGHTS["outcome"] * outcome_score(outcome)
        + WEIGHTS["feedback"] * feedback_score
        + WEIGHTS["reusability"] * reusability
        + WEIGHTS["complexity"] * complexity
        + WEIGHTS["novelty"] * novelty
    )
    return round(max(0.0, min(score, 1.0)), 4)


def example_messages(query: str, response: str) -> list[dict[str, str]]:
    """A training example in chat form."""
    return [{"role": "user", "content": query}, {"role": "assistant", "content": response}]


def content_hash(messages: Sequence[dict[str, str]]) -> bytes:
    """SHA-256 of the canonical JSON of the messages (whitespace at the ends of contents ignored)."""
    canonical = [{"role": m["role"], "content": m["content"].strip()} for m in messages]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()


async def add_training_example(
    conn: Connection,
    *,
    query: str,
    response: str,
    interaction_id: uuid.UUID | None,
    event_id: str | None,
    score: float | None,
) -> bool:
    """Insert one example unless an identical one exists; True when added. Call inside the caller's transaction."""
    messages = example_messages(query, response)
    added = await conn.fetchval(
        """INSERT INTO hybrid_training_examples (content_hash, messages, interaction_id, event_id, value_score)
           VALUES ($1, $2::jsonb, $3, $4, $5) ON CONFLICT (content_hash) DO NOTHING RETURNING id""",
        content_hash(messages),
        json.dumps(messages),
        interaction_id,
        event_id,
        score,
    )
    return added is not None


def worth_training(outcome: str | None, feedback: float | None, secret: bool) -> bool:
    """Only successful, not disliked, non-secret interactions teach a model."""
    return outcome == "success" and (feedback is None or feedback >= 0) and not secret


@dataclass(frozen=True, slots=True)
class Tracked:
    """A stored interaction's id and how it was classified."""

    id: uuid.UUID
    task_type: str
    complexity: float
    secret: bool


async def track_interaction(
    database: Database,
    *,
    query: str,
    response: str,
    agent_type: str,
    model_used: str,
    context_ids: Sequence[str] = (),
    tokens_used: int | None = None,
    latency_ms: float | None = None,
    secret: bool = False,
) -> Tracked:
    """Store an interaction reported by an agent; its outcome comes later through `record_outcome`."""
    interaction_id = uuid.uuid4()
    task_type = classify_task(query)
    complexity = estimate_complexity(query)
    is_secret = secret or detect_secret(query + "\n" + response) is not None
    await database.execute(
        """INSERT INTO hybrid_interactions (id, source, query, response, agent_type, model_used, context_ids,
               tokens_used, latency_ms, task_type, complexity, secret)
           VALUES ($1, 'track_interaction', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        interaction_id,
        query,
        response,
        agent_type,
        model_used,
        list(context_ids),
        tokens_used,
        latency_ms,
        task_type,
        complexity,
        is_secret,
    )
    return Tracked(interaction_id, task_type, complexity, is_secret)


@dataclass(frozen=True, slots=True)
class OutcomeRecorded:
    """What `record_outcome` stored and what should happen next."""

    interaction: dict[str, Any]
    value_score: float
    training_example_added: bool
    threshold: float | None
    routed_kind: BackendKind | None


async def record_outcome(
    database: Database,
    settings: HybridSettings,
    *,
    interaction_id: uuid.UUID,
    outcome: OutcomeName,
    feedback: float | None,
    novelty: float,
) -> OutcomeRecorded:
    """Store the outcome, score the interaction, add a training example, adapt the routing threshold.

    Idempotent: the example is deduplicated and only the first outcome adapts the threshold. All in one
    transaction; the threshold row is locked so concurrent outcomes adapt it one after another.

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
            raise NotFound(f"no interaction {interaction_id}; use the id returned by track_interaction or route_query")
        score = value_score(
            outcome=outcome,
            feedback=feedback,
            reusability=reusability(row["query"], row["response"]),
            complexity=float(row["complexity"]),
            novelty=novelty,
        )
        await conn.execute(
            """UPDATE hybrid_interactions SET outcome = $2, user_feedback = $3, outcome_at = now(), value_score = $4
               WHERE id = $1""",
            interaction_id,
            outcome,
            feedback,
            score,
        )
        added = False
        if worth_training(outcome, feedback, bool(row["secret"])):
            added = await add_training_example(
                conn,
                query=row["query"],
                response=row["response"],
                interaction_id=interaction_id,
                event_id=None,
                score=score,
            )
        threshold: float | None = None
        routed_kind: BackendKind | None = row["routed_kind"]
        # Only the first outcome teaches the threshold: repeating update_outcome must not adapt it again.
        if routed_kind is not None and row["outcome"] is None:
            threshold = await _adapt(conn, settings, row["task_type"], routed_kind, outcome, float(row["complexity"]))
    return OutcomeRecorded(dict(row), score, added, threshold, routed_kind)


async def _adapt(
    conn: Connection,
    settings: HybridSettings,
    task_type: str,
    routed_kind: BackendKind,
    outcome: OutcomeName,
    complexity: float,
) -> float:
    await conn.execute(
        "INSERT INTO hybrid_thresholds (task_type, complexity_threshold) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        task_type,
        settings.complexity_threshold,
    )
    current = await conn.fetchval(
        "SELECT complexity_threshold FROM hybrid_thresholds WHERE task_type = $1 FOR UPDATE", task_type
    )
    updated = adapt_threshold(
        float(current),
        routed_kind=routed_kind,
        outcome=outcome,
        complexity=complexity,
        step=settings.threshold_step,
        low=settings.complexity_threshold_min,
        high=settings.complexity_threshold_max,
    )
    await conn.execute(
        """UPDATE hybrid_thresholds SET complexity_threshold = $2, samples = samples + 1, updated_at = now()
           WHERE task_type = $1""",
        task_type,
        updated,
    )
    return updated


async def set_pattern(database: Database, interaction_id: uuid.UUID, pattern_id: uuid.UUID) -> None:
    """Link an interaction to the pattern it produced or strengthened."""
    await database.execute("UPDATE hybrid_interactions SET pattern_id = $2 WHERE id = $1", interaction_id, pattern_id)
