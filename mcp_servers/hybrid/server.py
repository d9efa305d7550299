"""Hybrid: the LLM coordinator MCP server.

Offers: `augment_query` (context from AIDB over MCP and Hybrid's own collections), `search_context`,
`route_query` (local-first routing to configured LLM backends with fallback, budget and secret rules),
`track_interaction`, `update_outcome` (learning: value score, patterns, training examples, adaptive
thresholds), `generate_training_data`, `learning_stats`, and the HTTP route `/learning/stats`.
Depends on PostgreSQL (system of record), a vector index namespace and the embedder, LLM backends, and
optionally AIDB and Ralph over MCP. A backend or AIDB that is down, an unknown id or a prompt that fits no
backend come back as tool errors the model can act on; unknown tools, missing scopes (interaction history
needs admin) and rate limits are JSON-RPC errors.
"""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_servers.hybrid import service
from mcp_servers.hybrid.deps import HybridDeps, open_hybrid
from mcp_servers.hybrid.models import (
    AgentType,
    AugmentRequest,
    AugmentResult,
    Collection,
    LearningStats,
    Outcome,
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
    TrainingFormat,
)
from mcp_servers.hybrid.routing import Preference
from mcp_servers.hybrid.stats import learning_stats
from mcp_servers.shared.annotations import IDEMPOTENT_WRITE, OPEN_WORLD, READ_ONLY, WRITE
from mcp_servers.shared.auth.scopes import grants
from mcp_servers.shared.errors import StackError
from mcp_servers.shared.harness import Core, StackServer
from mcp_servers.shared.middleware.http import error_response
from mcp_servers.shared.middleware.mcp import principal_of

INSTRUCTIONS = (
    "LLM coordinator. Call augment_query to get a prompt with retrieved context, route_query to get an answer "
    "from the best local or remote model, then update_outcome with the returned interaction_id so routing and "
    "learning improve. track_interaction records answers you obtained elsewhere."
)

MAX_TEXT = 200_000
# augment_query reads from AIDB, an outside server, and changes nothing.
READ_ONLY_OPEN_WORLD = ToolAnnotations(
    readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=True
)


def _is_admin(ctx: Context[HybridDeps, Any]) -> bool:
    principal = principal_of(ctx.request_context)
    return principal.scopes is None or grants(principal.scopes, server="hybrid", required="admin")


def create_server(core: Core) -> StackServer[HybridDeps]:
    """Build the Hybrid server; nothing is opened until a transport starts it."""
    server = StackServer(core, instructions=INSTRUCTIONS, open_deps=open_hybrid, title="Hybrid LLM coordinator")

    @server.tool("augment_query", annotations=READ_ONLY_OPEN_WORLD)
    async def augment_query(
        query: Annotated[
            str, Field(description="the question or task to find context for", min_length=1, max_length=20_000)
        ],
        ctx: Context[HybridDeps, Any],
        agent_type: Annotated[AgentType, Field(description="local = fewer, tighter items for a small model")] = "local",
        max_tokens: Annotated[
            int | None,
            Field(description="context budget in tokens (default from settings)", ge=0, le=200_000, strict=True),
        ] = None,
        project: Annotated[
            str | None,
            Field(
                description="AIDB project to draw documents from; omitted = 'default' (as in AIDB's search); "
                "'*' = every project",
                max_length=200,
            ),
        ] = None,
    ) -> AugmentResult:
        """Retrieve context for a query from AIDB (knowledge base, one project) and Hybrid's collections
        (patterns, error solutions, best practices) and return an augmented prompt, the context ids (pass them to
        track_interaction) and its token count. Works without AIDB (see `notes`); when AIDB is configured the
        caller needs AIDB's read scope too. Next: route_query."""
        request = AugmentRequest(query=query, agent_type=agent_type, max_tokens=max_tokens, project=project)
        may_read_aidb = principal_of(ctx.request_context).holds("aidb", "read")
        return await service.augment(ctx.request_context.lifespan_context, request, may_read_aidb=may_read_aidb)

    @server.tool("search_context", annotations=READ_ONLY)
    async def search_context(
        query: Annotated[str, Field(description="what to look for", min_length=1, max_length=10_000)],
        collection: Annotated[Collection, Field(description="interaction-history needs the admin scope")],
        ctx: Context[HybridDeps, Any],
        limit: Annotated[int, Field(description="hits to return", ge=1, le=50, strict=True)] = 5,
    ) -> SearchResult:
        """Hybrid (dense + BM25) search in one of Hybrid's collections; hits best first with their text."""
        request = SearchRequest(query=query, collection=collection, limit=limit)
        return await service.search_context(ctx.request_context.lifespan_context, request, is_admin=_is_admin(ctx))

    @server.tool("route_query", annotations=OPEN_WORLD)
    async def route_query(
        prompt: Annotated[str, Field(description="the user message", min_length=1, max_length=MAX_TEXT)],
        ctx: Context[HybridDeps, Any],
        system: Annotated[str | None, Field(description="optional system message", max_length=MAX_TEXT)] = None,
        prefer: Annotated[
            Preference, Field(description="auto = local first, escalating by size/complexity/errors")
        ] = "auto",
        max_tokens: Annotated[int, Field(description="completion token limit", ge=1, le=32_768, strict=True)] = 512,
        temperature: Annotated[float, Field(description="sampling temperature", ge=0, le=2)] = 0.2,
        json_schema: Annotated[
            dict[str, Any] | None, Field(description="JSON schema the answer must follow; parsed_json holds it")
        ] = None,
        contains_secrets: Annotated[
            bool, Field(description="true keeps the prompt on local backends (secrets are also detected)", strict=True)
        ] = False,
    ) -> RouteResult:
        """Answer a prompt with the best configured LLM: local first, remote when the prompt is too long or
        complex for local, local fails, or you prefer it; secrets never go remote. Returns the text, the backend,
        the reason, tokens, latency and an interaction_id: report how it went with update_outcome."""
        request = RouteQueryRequest(
            prompt=prompt,
            system=system,
            prefer=prefer,
            max_tokens=max_tokens,
            temperature=temperature,
            json_schema=json_schema,
            contains_secrets=contains_secrets,
        )
        return await service.route_query(ctx.request_context.lifespan_context, request)

    @server.tool("track_interaction", annotations=WRITE)
    async def track_interaction(
        query: Annotated[str, Field(description="what was asked", min_length=1, max_length=MAX_TEXT)],
        response: Annotated[str, Field(description="what the model answered", max_length=MAX_TEXT)],
        agent_type: Annotated[AgentType, Field(description="where the answer came from")],
        model_used: Annotated[str, Field(description="model name", min_length=1, max_length=200)],
        ctx: Context[HybridDeps, Any],
        context_ids: Annotated[list[str] | None, Field(description="ids from augment_query", max_length=100)] = None,
        tokens_used: Annotated[int | None, Field(ge=0, le=10_000_000, strict=True)] = None,
        latency_ms: Annotated[float | None, Field(ge=0, le=86_400_000)] = None,
        contains_secrets: Annotated[bool, Field(description="never export or send remote", strict=True)] = False,
    ) -> TrackResult:
        """Record an interaction you ran yourself; returns its id for update_outcome."""
        request = TrackRequest(
            query=query,
            response=response,
            agent_type=agent_type,
            model_used=model_used,
            context_ids=context_ids,
            tokens_used=tokens_used,
            latency_ms=latency_ms,
            contains_secrets=contains_secrets,
        )
        return await service.track(ctx.request_context.lifespan_context, request)

    @server.tool("update_outcome", annotations=IDEMPOTENT_WRITE)
    async def update_outcome(
        interaction_id: Annotated[str, Field(description="from route_query or track_interaction", max_length=64)],
        outcome: Annotated[Outcome, Field(description="how well the answer worked")],
        ctx: Context[HybridDeps, Any],
        user_feedback: Annotated[float | None, Field(description="-1 (bad) .. 1 (good)", ge=-1, le=1)] = None,
    ) -> OutcomeResult:
        """Record how an interaction turned out, once. Scores it; valuable ones become reusable patterns,
        successes become training examples, and routing thresholds adapt for its task type. Repeating the same
        outcome returns what was recorded; a different outcome for the same interaction is refused."""
        request = OutcomeRequest(interaction_id=interaction_id, outcome=outcome, user_feedback=user_feedback)
        return await service.update_outcome(ctx.request_context.lifespan_context, request)

    @server.tool("generate_training_data", annotations=IDEMPOTENT_WRITE, scope="admin")
    async def generate_training_data(
        ctx: Context[HybridDeps, Any],
        format: Annotated[TrainingFormat, Field(description="openai chat JSONL or ShareGPT JSONL")] = "openai",
    ) -> TrainingDataResult:
        """Append new training examples to the format's append-only dataset file (no duplicates); returns its
        path and size."""
        return await service.generate_training_data(
            ctx.request_context.lifespan_context, TrainingDataRequest(format=format)
        )

    @server.tool("learning_stats", annotations=READ_ONLY)
    async def learning_stats_tool(ctx: Context[HybridDeps, Any]) -> LearningStats:
        """Interactions, patterns, dataset size, routing decisions by reason, thresholds, budget, and the
        telemetry pipeline's checkpoint, lag, backpressure and dedup counts. Cheap; call any time."""
        return await learning_stats(ctx.request_context.lifespan_context)

    async def learning_stats_route(_: Request) -> Response:
        try:
            stats = await learning_stats(server.deps)
        except StackError as exc:
            return error_response(exc)
        return JSONResponse(stats.model_dump(mode="json"))

    server.route("/learning/stats", learning_stats_route, scope="read")
    return server
