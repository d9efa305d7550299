"""Hybrid tool inputs and outputs (module level, so the SDK can resolve them)."""

from typing import Any, Literal

from pydantic import BaseModel, Field

Collection = Literal["codebase-context", "skills-patterns", "error-solutions", "best-practices", "interaction-history"]
AgentType = Literal["local", "remote"]
Outcome = Literal["success", "partial", "failure"]
TrainingFormat = Literal["openai", "sharegpt"]


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
