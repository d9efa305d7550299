"""augment_query: retrieve context from AIDB (over MCP) and Hybrid's collections, build the prompt within a budget."""

import logging
from collections.abc import Mapping
from typing import Any

from mcp_servers.hybrid import knowledge
from mcp_servers.hybrid.models import AgentType, AugmentResult, ContextItem
from mcp_servers.hybrid.routing import estimate_tokens
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import DependencyUnavailable, PeerToolError, RateLimited
from mcp_servers.shared.peers import Peer
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

AIDB_LIMIT = 5
OWN_LIMIT = 3
# Small local models do better with less, more relevant context.
LOCAL_ITEM_LIMIT = 4
REMOTE_ITEM_LIMIT = 10


def parse_aidb_hits(content: Mapping[str, Any]) -> list[ContextItem]:
    """AIDB search results as context items; tolerant of field names (results/hits, text/content/snippet)."""
    raw = content.get("results", content.get("hits", []))
    items: list[ContextItem] = []
    if not isinstance(raw, list):
        return items
    for hit in raw:
        if not isinstance(hit, Mapping):
            continue
        text = next((hit[key] for key in ("text", "content", "snippet", "chunk") if isinstance(hit.get(key), str)), "")
        if not text:
            continue
        ident = next((hit[key] for key in ("chunk_id", "id", "document_id") if hit.get(key) is not None), len(items))
        score = hit.get("score")
        items.append(
            ContextItem(
                id=f"aidb:{ident}",
                source="aidb",
                score=float(score) if isinstance(score, int | float) else 0.0,
                text=text,
            )
        )
    return items


def build_prompt(query: str, items: list[ContextItem], agent_type: AgentType) -> str:
    """The augmented prompt: numbered context, then the question."""
    if not items:
        return query
    header = (
        "Context (use it only if relevant):"
        if agent_type == "local"
        else "Relevant context retrieved for this question; cite the numbers you rely on:"
    )
    lines = [header]
    for number, item in enumerate(items, start=1):
        lines.append(f"[{number}] ({item.source}) {item.text.strip()}")
    lines += ["", f"Question: {query}"]
    return "\n".join(lines)


async def augment_query(
    *,
    query: str,
    agent_type: AgentType,
    max_tokens: int,
    aidb: Peer | None,
    aidb_tool: str,
    vectors: VectorIndex,
    embedder: Embedder,
    project: str | None = None,
) -> AugmentResult:
    """Gather context (AIDB first, then patterns, error solutions and best practices) within `max_tokens`.

    AIDB is searched in `project` under its own rule (omitted = its 'default' project, '*' = every project).
    """
    notes: list[str] = []
    candidates: list[ContextItem] = []
    aidb_used = False
    if aidb is None:
        notes.append("aidb: not configured")
    else:
        try:
            arguments: dict[str, Any] = {"query": query, "limit": AIDB_LIMIT}
            if project is not None:
                arguments["project"] = project
            answer = await aidb.call_tool(aidb_tool, arguments)
            candidates += parse_aidb_hits(answer.data())
            aidb_used = True
        except (DependencyUnavailable, RateLimited, PeerToolError) as exc:
            notes.append(f"aidb: {exc}")
    dense = await embedder.embed_query(query)
    for collection in knowledge.AUGMENT_SOURCES:
        candidates += await knowledge.search_collection(
            vectors, embedder, collection, query, limit=OWN_LIMIT, dense=dense
        )
    limit = LOCAL_ITEM_LIMIT if agent_type == "local" else REMOTE_ITEM_LIMIT
    chosen: list[ContextItem] = []
    used = 0
    for item in candidates:
        cost = estimate_tokens(item.text) + 4
        if len(chosen) >= limit or used + cost > max_tokens:
            continue
        chosen.append(item)
        used += cost
    prompt = build_prompt(query, chosen, agent_type)
    return AugmentResult(
        augmented_prompt=prompt,
        context_ids=[item.id for item in chosen],
        context=chosen,
        token_count=estimate_tokens(prompt),
        aidb_used=aidb_used,
        notes=notes,
    )
