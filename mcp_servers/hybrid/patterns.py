"""Patterns: what a valuable interaction teaches, extracted by the LLM (JSON schema) or deterministically.

A new pattern at least `pattern_merge_similarity` (cosine) similar to an existing one merges into it: support
grows, skills are united, the higher value is kept. Patterns live in PostgreSQL and in `skills-patterns`.
"""

import json
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass

from mcp_servers.hybrid import knowledge, store
from mcp_servers.hybrid.router import Router
from mcp_servers.hybrid.routing import classify_task
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import DependencyUnavailable, InvalidRequest
from mcp_servers.shared.llm.port import ChatMessage
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors import bm25
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

PATTERN_SCHEMA = {
    "type": "object",
    "properties": {
        "problem_type": {"type": "string", "maxLength": 80},
        "approach": {"type": "string", "maxLength": 600},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 8},
        "generalisable_pattern": {"type": "string", "maxLength": 600},
    },
    "required": ["problem_type", "approach", "skills", "generalisable_pattern"],
    "additionalProperties": False,
}

_EXTRACT_SYSTEM = (
    "You distil reusable lessons from a solved task. Reply with JSON only: problem_type (a short label), "
    "approach (how it was solved), skills (short keywords), generalisable_pattern (one sentence that applies "
    "to similar tasks)."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_MAX_PROMPT_CHARS = 6000


@dataclass(frozen=True, slots=True)
class ExtractedPattern:
    """A lesson in the schema's shape, and who extracted it."""

    problem_type: str
    approach: str
    skills: tuple[str, ...]
    pattern: str
    extractor: str

    @property
    def text(self) -> str:
        """What is embedded and searched."""
        return f"{self.problem_type}: {self.pattern} Approach: {self.approach}"


def _first_sentence(text: str, limit: int = 300) -> str:
    stripped = re.sub(r"```.*?```", " ", text, flags=re.DOTALL).strip()
    first = _SENTENCE.split(stripped, maxsplit=1)[0] if stripped else ""
    return (first or text.strip())[:limit]


def deterministic_pattern(query: str, response: str) -> ExtractedPattern:
    """The fallback extractor: task type as the problem, the answer's first sentence as the approach."""
    problem_type = classify_task(query)
    tokens = [token for token in bm25.tokenize(query + " " + response) if len(token) > 2 and not token.isdigit()]
    skills = tuple(token for token, _ in Counter(tokens).most_common(5))
    approach = _first_sentence(response)
    pattern = f"For {problem_type} tasks like '{_first_sentence(query, 120)}': {approach}"
    return ExtractedPattern(problem_type, approach, skills, pattern[:600], "deterministic")


def parse_pattern(text: str, extractor: str) -> ExtractedPattern | None:
    """Validate the LLM's JSON against the schema's required shape; None when it does not fit."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    problem, approach, skills, pattern = (
        data.get("problem_type"),
        data.get("approach"),
        data.get("skills"),
        data.get("generalisable_pattern"),
    )
    if not (isinstance(problem, str) and isinstance(approach, str) and isinstance(pattern, str)):
        return None
    if not (isinstance(skills, list) and all(isinstance(skill, str) for skill in skills)):
        return None
    if not problem.strip() or not pattern.strip():
        return None
    return ExtractedPattern(
        problem.strip()[:80],
        approach.strip()[:600],
        tuple(s.strip()[:40] for s in skills[:8] if s.strip()),
        pattern.strip()[:600],
        extractor,
    )


async def extract_pattern(router: Router | None, query: str, response: str, *, secret: bool) -> ExtractedPattern:
    """Ask the LLM (local first; secret content never leaves local) and fall back to the deterministic extractor."""
    if router is not None and router.backends:
        messages = [
            ChatMessage("system", _EXTRACT_SYSTEM),
            ChatMessage("user", f"Task:\n{query[:_MAX_PROMPT_CHARS]}\n\nSolution:\n{response[:_MAX_PROMPT_CHARS]}"),
        ]
        try:
            outcome = await router.route(
                messages,
                prefer="local",
                max_tokens=300,
                temperature=0.0,
                json_schema=PATTERN_SCHEMA,
                secret=secret,
                record_interaction=False,
            )
        except (DependencyUnavailable, InvalidRequest) as exc:
            logger.info(
                "pattern extraction by LLM failed; using the fallback", extra={"error_type": type(exc).__name__}
            )
        else:
            parsed = parse_pattern(outcome.completion.text, f"llm:{outcome.backend.settings.name}")
            if parsed is not None:
                return parsed
            logger.info("LLM pattern did not match the schema; using the fallback")
    return deterministic_pattern(query, response)


async def novelty(vectors: VectorIndex, embedder: Embedder, text: str) -> float:
    """1 minus the best cosine similarity to a stored pattern (1.0 when there are none)."""
    hits = await knowledge.search_collection(vectors, embedder, "skills-patterns", text, limit=1, mode="dense")
    return 1.0 if not hits else max(0.0, min(1.0, 1.0 - hits[0].score))


async def store_pattern(
    database: Database,
    vectors: VectorIndex,
    embedder: Embedder,
    extracted: ExtractedPattern,
    *,
    interaction_id: uuid.UUID,
    value: float,
    merge_similarity: float,
) -> tuple[uuid.UUID, bool]:
    """Insert the pattern, or merge it into one at least `merge_similarity` similar; returns (id, merged)."""
    dense = await embedder.embed_query(extracted.text)
    hits = await knowledge.search_collection(
        vectors, embedder, "skills-patterns", extracted.text, limit=1, mode="dense", dense=dense
    )
    pattern = store.NewPattern(
        id=uuid.uuid4(),
        problem_type=extracted.problem_type,
        approach=extracted.approach,
        skills=extracted.skills,
        pattern=extracted.pattern,
        extractor=extracted.extractor,
        value_score=value,
        interaction_id=interaction_id,
    )
    if hits and hits[0].score >= merge_similarity:
        existing = uuid.UUID(hits[0].id.split(":", 1)[1])
        if await store.merge_pattern(database, existing, pattern):
            return existing, True
    await store.insert_pattern(database, pattern)
    await knowledge.put_text(
        vectors,
        embedder,
        "skills-patterns",
        str(pattern.id),
        extracted.text,
        {"problem_type": extracted.problem_type, "skills": list(extracted.skills)},
    )
    return pattern.id, False
