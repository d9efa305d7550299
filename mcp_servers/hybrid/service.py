"""What each Hybrid tool does, as plain async functions over HybridDeps (server.py only declares the tools)."""

import json
import logging
import uuid
from typing import Any

from mcp_servers.hybrid import knowledge, learning, patterns
from mcp_servers.hybrid.augment import augment_query
from mcp_servers.hybrid.dataset import export_training_data
from mcp_servers.hybrid.deps import HybridDeps
from mcp_servers.hybrid.models import (
    AgentType,
    Attempt,
    AugmentResult,
    Collection,
    OutcomeResult,
    RouteResult,
    SearchResult,
    TrackResult,
    TrainingDataResult,
    TrainingFormat,
)
from mcp_servers.hybrid.routing import Preference
from mcp_servers.shared.errors import InvalidRequest, NotFound, PermissionDenied
from mcp_servers.shared.llm.port import ChatMessage

logger = logging.getLogger(__name__)

_ERROR_HINTS = ("error", "exception", "traceback", "failed", "failure", "crash", "bug")
BEST_PRACTICE_VALUE = 0.8


async def route_query(
    deps: HybridDeps,
    *,
    prompt: str,
    system: str | None,
    prefer: Preference,
    max_tokens: int,
    temperature: float,
    json_schema: dict[str, Any] | None,
    secret: bool,
) -> RouteResult:
    """Route one prompt and return the answer with the decision that produced it."""
    messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", prompt)]
    outcome = await deps.router.route(
        messages,
        prefer=prefer,
        max_tokens=max_tokens,
        temperature=temperature,
        json_schema=json_schema,
        secret=secret,
    )
    parsed: Any = None
    if json_schema is not None:
        try:
            parsed = json.loads(outcome.completion.text)
        except ValueError:
            parsed = None
    completion = outcome.completion
    assert outcome.interaction_id is not None
    return RouteResult(
        text=completion.text,
        parsed_json=parsed,
        backend=outcome.backend.settings.name,
        backend_kind=outcome.backend.settings.kind,
        model=completion.model,
        reason=outcome.reason,
        attempts=[Attempt(backend=a.backend, outcome=a.outcome, reason=a.reason) for a in outcome.attempts],
        task_type=outcome.task_type,
        complexity=outcome.complexity,
        secret_detected=outcome.secret,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        latency_ms=round(completion.latency_seconds * 1000, 3),
        cost=outcome.cost,
        decision_id=outcome.decision_id,
        interaction_id=str(outcome.interaction_id),
    )


async def track(
    deps: HybridDeps,
    *,
    query: str,
    response: str,
    agent_type: AgentType,
    model_used: str,
    context_ids: list[str],
    tokens_used: int | None,
    latency_ms: float | None,
    secret: bool,
) -> TrackResult:
    """Store an interaction and index it in the (admin-only) interaction history."""
    tracked = await learning.track_interaction(
        deps.database,
        query=query,
        response=response,
        agent_type=agent_type,
        model_used=model_used,
        context_ids=context_ids,
        tokens_used=tokens_used,
        latency_ms=latency_ms,
        secret=secret,
    )
    if not tracked.secret:  # secrets stay in PostgreSQL only, never in a searchable index
        await knowledge.put_text(
            deps.vectors,
            deps.embedder,
            "interaction-history",
            str(tracked.id),
            f"Q: {query}\nA: {response}",
            {"agent_type": agent_type, "model": model_used},
        )
    return TrackResult(interaction_id=str(tracked.id), task_type=tracked.task_type, complexity=tracked.complexity)


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no interaction {value!r}; use the id returned by track_interaction or route_query") from None


async def update_outcome(
    deps: HybridDeps, *, interaction_id: str, outcome: learning.OutcomeName, user_feedback: float | None
) -> OutcomeResult:
    """Record the outcome; valuable interactions become patterns, successes training examples."""
    identifier = _parse_id(interaction_id)
    row = await deps.database.fetchrow("SELECT query FROM hybrid_interactions WHERE id = $1", identifier)
    if row is None:
        raise NotFound(f"no interaction {interaction_id}; use the id returned by track_interaction or route_query")
    novelty = await patterns.novelty(deps.vectors, deps.embedder, row["query"])
    recorded = await learning.record_outcome(
        deps.database,
        deps.settings.hybrid,
        interaction_id=identifier,
        outcome=outcome,
        feedback=user_feedback,
        novelty=novelty,
    )
    if recorded.threshold is not None:
        deps.router.set_threshold(recorded.interaction["task_type"], recorded.threshold)
    interaction = recorded.interaction
    pattern_id: uuid.UUID | None = interaction["pattern_id"]
    merged = False
    if (
        outcome != "failure"
        and interaction["pattern_id"] is None  # already taught: a repeated outcome must not count twice
        and recorded.value_score >= deps.settings.hybrid.pattern_min_value
    ):
        extracted = await patterns.extract_pattern(
            deps.router, interaction["query"], interaction["response"], secret=bool(interaction["secret"])
        )
        pattern_id, merged = await patterns.store_pattern(
            deps.database,
            deps.vectors,
            deps.embedder,
            extracted,
            interaction_id=identifier,
            value=recorded.value_score,
            merge_similarity=deps.settings.hybrid.pattern_merge_similarity,
        )
        await learning.set_pattern(deps.database, identifier, pattern_id)
        if recorded.value_score >= BEST_PRACTICE_VALUE:
            await knowledge.put_text(
                deps.vectors,
                deps.embedder,
                "best-practices",
                str(pattern_id),
                extracted.text,
                {"problem_type": extracted.problem_type},
            )
    if outcome == "success" and not interaction["secret"] and _looks_like_error(interaction["query"]):
        await knowledge.put_text(
            deps.vectors,
            deps.embedder,
            "error-solutions",
            interaction_id,
            f"Problem: {interaction['query']}\nSolution: {interaction['response']}",
        )
    return OutcomeResult(
        interaction_id=interaction_id,
        value_score=recorded.value_score,
        pattern_id=str(pattern_id) if pattern_id else None,
        pattern_merged=merged,
        training_example_added=recorded.training_example_added,
        threshold=recorded.threshold,
    )


def _looks_like_error(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _ERROR_HINTS)


async def search_context(
    deps: HybridDeps, *, query: str, collection: Collection, limit: int, is_admin: bool
) -> SearchResult:
    """Hybrid search in one collection; interaction history needs the admin scope."""
    if collection in knowledge.ADMIN_ONLY and not is_admin:
        raise PermissionDenied(f"collection {collection} needs the admin scope on hybrid", required_scope="admin")
    hits = await knowledge.search_collection(deps.vectors, deps.embedder, collection, query, limit=limit)
    return SearchResult(collection=collection, hits=hits)


async def augment(deps: HybridDeps, *, query: str, agent_type: AgentType, max_tokens: int | None) -> AugmentResult:
    """Context from AIDB and Hybrid's collections, assembled into a prompt."""
    budget = max_tokens if max_tokens is not None else deps.settings.hybrid.context_max_tokens
    return await augment_query(
        query=query,
        agent_type=agent_type,
        max_tokens=budget,
        aidb=deps.aidb,
        aidb_tool=deps.settings.hybrid.aidb_search_tool,
        vectors=deps.vectors,
        embedder=deps.embedder,
    )


async def generate_training_data(deps: HybridDeps, *, fmt: TrainingFormat) -> TrainingDataResult:
    """Bring the format's dataset file up to date (append-only)."""
    if fmt not in ("openai", "sharegpt"):
        raise InvalidRequest("format must be openai or sharegpt")
    return await export_training_data(deps.database, deps.dataset_dir, fmt)
