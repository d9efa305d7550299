"""Interactions and their outcomes as pure decisions: classification, the value score, training examples and
threshold changes. `store.py` writes what these functions decide; nothing here does I/O.

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
from typing import Literal

from mcp_servers.hybrid.models import TrackRequest
from mcp_servers.hybrid.routing import (
    BackendKind,
    TaskType,
    adapt_threshold,
    classify_task,
    detect_secret,
    estimate_complexity,
)
from mcp_servers.shared.config import HybridSettings
from mcp_servers.shared.errors import Conflict

OutcomeName = Literal["success", "partial", "failure"]
# Feedback is stored as float4: a repeat of the same value reads back within this.
_FEEDBACK_TOLERANCE = 1e-6

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


def worth_training(outcome: str | None, feedback: float | None, secret: bool) -> bool:
    """Only successful, not disliked, non-secret interactions teach a model."""
    return outcome == "success" and (feedback is None or feedback >= 0) and not secret


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """A training example in chat form and its dedup key (`content_hash` of the messages)."""

    messages: tuple[dict[str, str], ...]
    content_hash: bytes

    @property
    def messages_json(self) -> str:
        """The messages as the JSON array stored and exported."""
        return json.dumps(list(self.messages))


def training_example(query: str, response: str) -> TrainingExample:
    """The example an interaction teaches."""
    messages = example_messages(query, response)
    return TrainingExample(tuple(messages), content_hash(messages))


@dataclass(frozen=True, slots=True)
class NewInteraction:
    """An interaction reported through track_interaction, classified and ready to store."""

    id: uuid.UUID
    query: str
    response: str
    agent_type: str
    model_used: str
    context_ids: tuple[str, ...]
    tokens_used: int | None
    latency_ms: float | None
    task_type: TaskType
    complexity: float
    secret: bool


def new_interaction(request: TrackRequest) -> NewInteraction:
    """Classify a reported interaction; it is secret when flagged so or when a detector matches."""
    return NewInteraction(
        id=uuid.uuid4(),
        query=request.query,
        response=request.response,
        agent_type=request.agent_type,
        model_used=request.model_used,
        context_ids=tuple(request.context_ids or ()),
        tokens_used=request.tokens_used,
        latency_ms=request.latency_ms,
        task_type=classify_task(request.query),
        complexity=estimate_complexity(request.query),
        secret=request.contains_secrets or detect_secret(request.query + "\n" + request.response) is not None,
    )


@dataclass(frozen=True, slots=True)
class InteractionRecord:
    """A stored interaction as an outcome sees it, with the kind of backend that answered it if it was routed."""

    id: uuid.UUID
    query: str
    response: str
    task_type: str
    complexity: float
    secret: bool
    outcome: str | None
    pattern_id: uuid.UUID | None
    routed_kind: BackendKind | None
    user_feedback: float | None = None
    value_score: float | None = None


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    """How one outcome moves its task type's routing threshold (`initial` when the task type has none yet)."""

    task_type: str
    initial: float
    routed_kind: BackendKind
    outcome: OutcomeName
    complexity: float
    step: float
    low: float
    high: float

    def apply(self, current: float) -> float:
        """The threshold after this outcome."""
        return adapt_threshold(
            current,
            routed_kind=self.routed_kind,
            outcome=self.outcome,
            complexity=self.complexity,
            step=self.step,
            low=self.low,
            high=self.high,
        )


@dataclass(frozen=True, slots=True)
class OutcomeAssessment:
    """What recording an outcome writes: the outcome, its score, an example and a threshold change, if any."""

    outcome: OutcomeName
    feedback: float | None
    value_score: float
    example: TrainingExample | None
    threshold: ThresholdChange | None
    repeat: bool = False  # the same outcome was recorded before: nothing is written again


def assess_outcome(
    interaction: InteractionRecord,
    *,
    outcome: OutcomeName,
    feedback: float | None,
    novelty: float,
    settings: HybridSettings,
) -> OutcomeAssessment:
    """Score an outcome; successes teach an example, and a routed interaction's outcome moves the threshold.

    An outcome is recorded once: repeating the same outcome and feedback is a no-op (`repeat`, the recorded
    score), and a different one raises Conflict rather than silently scoring the interaction again.
    """
    if interaction.outcome is not None:
        same_feedback = (interaction.user_feedback is None) == (feedback is None) and (
            feedback is None or abs((interaction.user_feedback or 0.0) - feedback) < _FEEDBACK_TOLERANCE
        )
        if interaction.outcome != outcome or not same_feedback:
            recorded = f"outcome {interaction.outcome!r}" + (
                f" with feedback {round(interaction.user_feedback, 4)}" if interaction.user_feedback is not None else ""
            )
            raise Conflict(
                f"interaction {interaction.id} already has {recorded}; an outcome is recorded once "
                "(repeat the same outcome to read it back)"
            )
        score = round(interaction.value_score or 0.0, 4)
        return OutcomeAssessment(outcome, feedback, score, None, None, repeat=True)
    score = value_score(
        outcome=outcome,
        feedback=feedback,
        reusability=reusability(interaction.query, interaction.response),
        complexity=interaction.complexity,
        novelty=novelty,
    )
    example = (
        training_example(interaction.query, interaction.response)
        if worth_training(outcome, feedback, interaction.secret)
        else None
    )
    threshold = None
    if interaction.routed_kind is not None:
        threshold = ThresholdChange(
            task_type=interaction.task_type,
            initial=settings.complexity_threshold,
            routed_kind=interaction.routed_kind,
            outcome=outcome,
            complexity=interaction.complexity,
            step=settings.threshold_step,
            low=settings.complexity_threshold_min,
            high=settings.complexity_threshold_max,
        )
    return OutcomeAssessment(outcome, feedback, score, example, threshold)
