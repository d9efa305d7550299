"""Hybrid tool inputs and outputs (module level, so the SDK can resolve them).

A tool's arguments reach its logic as one request object (`AugmentRequest`, ...): its fields are the tool's
parameters, by the same names, already validated by the declaration in `server.py` (which defines the schema).
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcp_servers.hybrid.routing import Preference

Collection = Literal["skills-patterns", "error-solutions", "best-practices", "interaction-history"]
AgentType = Literal["local", "remote"]
Outcome = Literal["success", "partial", "failure"]
TrainingFormat = Literal["openai", "sharegpt"]


@dataclass(frozen=True, slots=True)
class AugmentRequest:
    """augment_query's arguments."""

    query: str
    agent_type: AgentType = "local"
    max_tokens: int | None = None
    project: str | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """search_context's arguments."""

    query: str
    collection: Collection
    limit: int = 5


@dataclass(frozen=True, slots=True)
class RouteQueryRequest:
    """route_query's arguments."""

    prompt: str
    system: str | None = None
    prefer: Preference = "auto"
    max_tokens: int = 512
    temperature: float = 0.2
    json_schema: dict[str, Any] | None = None
    contains_secrets: bool = False


@dataclass(frozen=True, slots=True)
class TrackRequest:
    """track_interaction's arguments."""

    query: str
    response: str
    agent_type: AgentType
    model_used: str
    context_ids: list[str] | None = None
    tokens_used: int | None = None
    latency_ms: float | None = None
    contains_secrets: bool = False


@dataclass(frozen=True, slots=True)
class OutcomeRequest:
    """update_outcome's arguments."""

    interaction_id: str
    outcome: Outcome
    user_feedback: float | None = None


@dataclass(frozen=True, slots=True)
class TrainingDataRequest:
    """generate_training_data's arguments."""

    format: TrainingFormat = "openai"


class ContextItem(BaseModel):
    """One piece of retrieved context."""

    id: str = Field(description="stable id: 'aidb:<document>#<chunk>' or '<collection>:<point>'")
    source: str = Field(description="'aidb' or the Hybrid collection it came from")
    score: float
    text: str


class AugmentResult(BaseModel):
    """A prompt with retrieved context prepended, ready to send to a model."""

    augmented_prompt: str
    context_ids: list[str] = Field(description="pass these to track_interaction")
    context: list[ContextItem]
    token_count: int = Field(description="estimated tokens of augmented_prompt")
    aidb_used: bool = Field(description="false when AIDB is not configured or was unreachable")
    notes: list[str] = Field(default_factory=list, description="why a source was skipped, if any")


class SearchResult(BaseModel):
    """Hits from one Hybrid collection, best first."""

    collection: Collection
    hits: list[ContextItem]


class Attempt(BaseModel):
    """A backend the router tried or skipped, and why."""

    backend: str
    outcome: Literal["ok", "error", "skipped"]
    reason: str


class RouteResult(BaseModel):
    """A model's answer and how it was routed."""

    text: str
    parsed_json: Any | None = Field(default=None, description="the answer parsed as JSON when json_schema was given")
    backend: str
    backend_kind: AgentType
    model: str
    reason: str = Field(description="why this backend: local_first, context_overflow, complexity_over_threshold, ...")
    attempts: list[Attempt]
    task_type: str
    complexity: float
    secret_detected: bool
    prompt_tokens: int | None = Field(description="as reported by the backend; null if it reported none")
    completion_tokens: int | None
    latency_ms: float
    cost: float
    decision_id: int
    interaction_id: str = Field(description="pass to update_outcome to teach the router")


class TrackResult(BaseModel):
    """The stored interaction."""

    interaction_id: str = Field(description="pass to update_outcome once the result is known")
    task_type: str
    complexity: float


class OutcomeResult(BaseModel):
    """What recording an outcome changed."""

    interaction_id: str
    value_score: float = Field(
        description="0..1: outcome 40%, feedback 20%, reusability 20%, complexity 10%, novelty 10%"
    )
    pattern_id: str | None = Field(description="the pattern this interaction created or merged into")
    pattern_merged: bool
    training_example_added: bool
    threshold: float | None = Field(description="the task type's routing threshold after adapting, if routed")


class TrainingDataResult(BaseModel):
    """The append-only dataset file for one format."""

    format: TrainingFormat
    path: str
    examples_total: int
    examples_appended: int
    bytes: int


class PipelineStats(BaseModel):
    """The telemetry learning pipeline."""

    running: bool
    events_processed: int
    duplicates_skipped: int
    checkpoint: dict[str, int]
    checkpoint_updated_at: str | None
    checkpoints_written: int
    lag_bytes: int
    backpressure: bool
    backpressure_threshold_bytes: int
    shed_events: int
    skipped_lines: int


class LearningStats(BaseModel):
    """Learning and routing at a glance."""

    interactions: int
    interactions_with_outcome: int
    patterns: int
    training_examples: int
    dataset_files: dict[str, int] = Field(description="format -> examples exported")
    dedup_events: int = Field(description="event ids remembered for deduplication")
    routing_decisions: int
    routing_by_reason: dict[str, int]
    thresholds: dict[str, float]
    budget_spent_today: float
    budget_limit: float
    pipeline: PipelineStats
    proposals: int
    llm_backends: list[str] = Field(
        default_factory=list, description="configured LLM backends by name; empty: route_query cannot answer"
    )
