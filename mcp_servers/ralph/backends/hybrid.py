"""The `hybrid` backend: each iteration asks Hybrid's `route_query` over MCP, with context from AIDB's `search`.

This is the nested orchestration Ralph -> Hybrid -> (local or remote LLM), Ralph -> AIDB. AIDB being down only
costs the context (the iteration still runs); Hybrid being down fails the iteration (with backoff).
"""

import logging
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from mcp_servers.ralph.backends.port import IterationOutcome, IterationRequest
from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import DependencyUnavailable, PeerToolError, RateLimited
from mcp_servers.shared.llm.port import NO_LLM_CONFIGURED
from mcp_servers.shared.peers import Peer

logger = logging.getLogger(__name__)

# AIDB refuses huge queries; the start of the prompt names the task well enough to find context.
_QUERY_CHARS = 500
_CONTEXT_CHARS_PER_HIT = 1500
_PREVIOUS_OUTPUT_CHARS = 4000

SYSTEM_PROMPT = (
    "You are an autonomous agent that works on one task over several iterations. Each iteration you see the task, "
    "context from a knowledge base and your previous answer; improve on it."
)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _hits(structured: dict[str, Any] | None) -> list[dict[str, Any]]:
    if structured is None:
        return []
    hits = _first(structured, "hits", "results", "documents")
    return [hit for hit in hits if isinstance(hit, dict)] if isinstance(hits, list) else []


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def compose_prompt(
    prompt: str, *, promise: str | None, context: list[dict[str, Any]], previous_output: str | None, number: int
) -> str:
    """The text sent to Hybrid for one iteration: task, knowledge-base context, the previous answer."""
    parts = [f"Task (iteration {number}):\n{prompt}"]
    if promise:
        parts.append(f"When, and only when, the task is fully done, output exactly <promise>{promise}</promise>.")
    if context:
        lines = []
        for index, hit in enumerate(context, start=1):
            title = _first(hit, "title", "document_id", "id") or "untitled"
            text = str(_first(hit, "text", "chunk", "content", "chunk_text") or "")[:_CONTEXT_CHARS_PER_HIT]
            lines.append(f"[{index}] {title}\n{text}")
        parts.append("Context from the knowledge base:\n" + "\n\n".join(lines))
    if previous_output:
        parts.append(f"Your previous answer:\n{previous_output[-_PREVIOUS_OUTPUT_CHARS:]}")
    return "\n\n".join(parts)


class HybridBackend:
    """Iterations through Hybrid (and AIDB for context). Does not own the downstream clients."""

    name = "hybrid"
    reports_cost = True  # when Hybrid reports usage (unknown usage ends a capped task: fail closed)

    def __init__(self, hybrid: Peer, aidb: Peer | None, settings: RalphSettings) -> None:
        self._hybrid = hybrid
        self._aidb = aidb
        self._settings = settings

    @property
    def reads_from(self) -> tuple[str, ...]:
        """AIDB when its search results go into the prompt (and so, possibly verbatim, into the output)."""
        return ("aidb",) if self._aidb is not None and self._settings.context_results > 0 else ()

    async def _context(self, query: str) -> tuple[list[dict[str, Any]], str]:
        if self._aidb is None or self._settings.context_results == 0:
            return [], "no AIDB context (not configured)"
        try:
            answer = await self._aidb.call_tool(
                "search", {"query": query[:_QUERY_CHARS], "limit": self._settings.context_results}
            )
        except (DependencyUnavailable, RateLimited, PeerToolError) as exc:
            logger.info("aidb context unavailable", extra={"error_type": type(exc).__name__})
            return [], "no AIDB context (search failed)"
        hits = _hits(answer.structured)[: self._settings.context_results]
        return hits, f"{len(hits)} AIDB hits"

    async def run(self, request: IterationRequest) -> IterationOutcome:
        """Ask Hybrid once; a tool error or an unreachable Hybrid is a failed iteration."""
        spec = request.task.spec
        context, context_note = await self._context(spec.prompt)
        prompt = compose_prompt(
            request.prompt,
            promise=spec.completion_promise,
            context=context,
            previous_output=request.previous_output,
            number=request.number,
        )
        summary = f"route_query, prompt {len(prompt)} chars, {context_note}"
        started = time.perf_counter()
        try:
            answer = await self._hybrid.call_tool(
                "route_query",
                {"prompt": prompt, "system": SYSTEM_PROMPT, "max_tokens": self._settings.hybrid_max_tokens},
                timeout_seconds=request.timeout_seconds,
            )
        except (DependencyUnavailable, RateLimited) as exc:
            timed_out = "timed out" in str(exc)
            return IterationOutcome(
                "", False, timed_out, None, summary, error=str(exc), unavailable=None if timed_out else str(exc)
            )
        except PeerToolError as exc:
            if NO_LLM_CONFIGURED in exc.text:
                reason = f"Hybrid has no LLM to answer with: {exc.text}"
                return IterationOutcome(
                    "", False, False, None, summary, error=reason, unavailable=reason, configured_off=True
                )
            return IterationOutcome(str(exc), False, False, None, summary, error="route_query reported an error")
        structured = answer.structured or {}
        text = _first(structured, "text", "response", "content", "output")
        output = str(text) if text is not None else answer.text
        prompt_tokens = _int(structured.get("prompt_tokens"))
        completion_tokens = _int(structured.get("completion_tokens"))
        reported = prompt_tokens is not None or completion_tokens is not None
        tokens = (prompt_tokens or 0) + (completion_tokens or 0) if reported else None
        # A backend that reported no usage has an unknown cost, whatever figure accompanies it (fail closed).
        cost = _decimal(_first(structured, "cost_usd", "cost")) if reported else None
        backend_used = _first(structured, "backend", "backend_used")
        logger.info(
            "hybrid iteration answered",
            extra={
                "backend": backend_used,
                "duration_seconds": round(time.perf_counter() - started, 3),
                "output_chars": len(output),
            },
        )
        if backend_used:
            summary += f", answered by {backend_used}"
        return IterationOutcome(
            output=output,
            succeeded=True,
            timed_out=False,
            exit_status=0,
            input_summary=summary,
            cost_usd=cost,
            tokens=tokens,
            reference=str(structured["interaction_id"]) if structured.get("interaction_id") else None,
        )

    async def report_outcome(self, outcome: IterationOutcome, *, completed: bool) -> None:
        """Teach Hybrid's router: the answer that completed the task is a success, an earlier one partial."""
        if outcome.reference is None:
            return
        verdict = "success" if completed else ("partial" if outcome.succeeded else "failure")
        try:
            await self._hybrid.call_tool("update_outcome", {"interaction_id": outcome.reference, "outcome": verdict})
        except (DependencyUnavailable, RateLimited, PeerToolError) as exc:
            logger.info("hybrid outcome not recorded", extra={"error_type": type(exc).__name__})
