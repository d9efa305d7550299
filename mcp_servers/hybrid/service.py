"""What each Hybrid tool does, as plain async functions over HybridDeps and the tool's request object (server.py
only declares the tools)."""

import functools
import json
import logging
import uuid
from typing import Any

from mcp_servers.hybrid import knowledge, learning, patterns, store
from mcp_servers.hybrid.augment import augment_query
from mcp_servers.hybrid.dataset import export_training_data
from mcp_servers.hybrid.deps import HybridDeps
from mcp_servers.hybrid.models import (
    Attempt,
    AugmentRequest,
    AugmentResult,
    OutcomeRequest,
    OutcomeResult,
    RouteQueryRequest,
    RouteResult,
    SearchRequest,
    SearchResult,
    TrackRequest,
    TrackResult,
    TrainingDataRequest,
    TrainingDataResult,
)
from mcp_servers.shared.errors import InvalidRequest, NotFound, PermissionDenied
from mcp_servers.shared.llm.port import ChatMessage

logger = logging.getLogger(__name__)


async def route_query(deps: HybridDeps, request: RouteQueryRequest) -> RouteResult:
    """Route one prompt and return the answer with the decision that produced it."""
    system = request.system
    messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", request.prompt)]
    outcome = await deps.router.route(
        messages,
        prefer=request.prefer,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        json_schema=request.json_schema,
        secret=request.contains_secrets,
    )
    parsed: Any = None
    if request.json_schema is not None:
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


async def track(deps: HybridDeps, request: TrackRequest) -> TrackResult:
    """Store an interaction and index it in the (admin-only) interaction history."""
    interaction = learning.new_interaction(request)
    await store.insert_interaction(deps.database, interaction)
    if not interaction.secret:  # secrets stay in PostgreSQL only, never in a searchable index
        await knowledge.put_text(
            deps.vectors,
            deps.embedder,
            "interaction-history",
            str(interaction.id),
            knowledge.interaction_text(request.query, request.response),
            {"agent_type": request.agent_type, "model": request.model_used},
        )
    return TrackResult(
        interaction_id=str(interaction.id), task_type=interaction.task_type, complexity=interaction.complexity
    )


def _parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no interaction {value!r}; use the id returned by track_interaction or route_query") from None


async def update_outcome(deps: HybridDeps, request: OutcomeRequest) -> OutcomeResult:
    """Record the outcome; valuable interactions become patterns, successes training examples."""
    interaction_id, outcome = request.interaction_id, request.outcome
    identifier = _parse_id(interaction_id)
    novelty = await patterns.novelty(
        deps.vectors, deps.embedder, await store.interaction_query(deps.database, identifier)
    )
    recorded = await store.record_outcome(
        deps.database,
        identifier,
        functools.partial(
            learning.assess_outcome,
            outcome=outcome,
            feedback=request.user_feedback,
            novelty=novelty,
            settings=deps.settings.hybrid,
        ),
    )
    interaction = recorded.interaction
    value = recorded.assessment.value_score
    if recorded.assessment.repeat:  # recorded before: report it, change nothing
        return OutcomeResult(
            interaction_id=interaction_id,
            value_score=value,
            pattern_id=str(interaction.pattern_id) if interaction.pattern_id else None,
            pattern_merged=False,
            training_example_added=False,
            threshold=None,
        )
    if recorded.threshold is not None:
        deps.router.set_threshold(interaction.task_type, recorded.threshold)
    pattern_id = interaction.pattern_id
    merged = False
    if (
        outcome != "failure"
        and interaction.pattern_id is None  # already taught: a repeated outcome must not count twice
        and value >= deps.settings.hybrid.pattern_min_value
    ):
        extracted = await patterns.extract_pattern(
            deps.router, interaction.query, interaction.response, secret=interaction.secret
        )
        pattern_id, merged = await patterns.store_pattern(
            deps.database,
            deps.vectors,
            deps.embedder,
            extracted,
            interaction_id=identifier,
            value=value,
            merge_similarity=deps.settings.hybrid.pattern_merge_similarity,
        )
        await store.link_pattern(deps.database, identifier, pattern_id)
        if value >= knowledge.BEST_PRACTICE_VALUE:
            await knowledge.put_text(
                deps.vectors,
                deps.embedder,
                "best-practices",
                str(pattern_id),
                extracted.text,
                {"problem_type": extracted.problem_type},
            )
    if outcome == "success" and not interaction.secret and knowledge.looks_like_error(interaction.query):
        await knowledge.put_text(
            deps.vectors,
            deps.embedder,
            "error-solutions",
            interaction_id,
            knowledge.error_solution_text(interaction.query, interaction.response),
        )
    return OutcomeResult(
        interaction_id=interaction_id,
        value_score=value,
        pattern_id=str(pattern_id) if pattern_id else None,
        pattern_merged=merged,
        training_example_added=recorded.training_example_added,
        threshold=recorded.threshold,
    )


async def search_context(deps: HybridDeps, request: SearchRequest, *, is_admin: bool) -> SearchResult:
    """Hybrid search in one collection; interaction history needs the admin scope."""
    collection = request.collection
    if collection in knowledge.ADMIN_ONLY and not is_admin:
        raise PermissionDenied(f"collection {collection} needs the admin scope on hybrid", required_scope="admin")
    hits = await knowledge.search_collection(
        deps.vectors, deps.embedder, collection, request.query, limit=request.limit
    )
    return SearchResult(collection=collection, hits=hits)


async def augment(deps: HybridDeps, request: AugmentRequest, *, may_read_aidb: bool) -> AugmentResult:
    """Context from AIDB and Hybrid's collections, assembled into a prompt.

    Args:
        may_read_aidb: whether the caller holds AIDB's read scope itself. Hybrid calls AIDB with its own key, so
            without this check augment_query would hand AIDB's content to a caller AIDB refuses.
    """
    if deps.aidb is not None and not may_read_aidb:
        raise PermissionDenied(
            "augment_query returns AIDB content: it needs the 'aidb:read' scope (or stack-wide read) as well",
            required_scope="aidb:read",
        )
    budget = request.max_tokens if request.max_tokens is not None else deps.settings.hybrid.context_max_tokens
    return await augment_query(
        query=request.query,
        agent_type=request.agent_type,
        max_tokens=budget,
        aidb=deps.aidb,
        aidb_tool=deps.settings.hybrid.aidb_search_tool,
        vectors=deps.vectors,
        embedder=deps.embedder,
        project=request.project,
    )


async def generate_training_data(deps: HybridDeps, request: TrainingDataRequest) -> TrainingDataResult:
    """Bring the format's dataset file up to date (append-only)."""
    fmt = request.format
    if fmt not in ("openai", "sharegpt"):
        raise InvalidRequest("format must be openai or sharegpt")
    return await export_training_data(deps.database, deps.dataset_dir, fmt)
