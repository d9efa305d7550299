"""Start-up catch-up: write Hybrid's collections again from PostgreSQL when the index holds fewer points than the
rows behind them (a restore of a backup taken while Hybrid ran, a lost or replaced vector directory).

The rows do not keep embeddings: texts are embedded again, a page at a time. Point ids are deterministic
(`knowledge.put_texts`), so rebuilding is idempotent and points written meanwhile by the tools are replaced by the
same text. Texts and payloads are made by the same helpers the tools use; a merged pattern's best-practice point
is rebuilt from the stored pattern (the tools wrote the merging extraction's text under the same id).
"""

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from mcp_servers.hybrid import knowledge, store
from mcp_servers.hybrid.models import Collection
from mcp_servers.hybrid.patterns import ExtractedPattern
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.observability.progress import ProgressLog
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

PAGE: Final = 64

Item = tuple[str, str, dict[str, Any]]
# A page of (key, text, payload) after a row id, and the last row id of that page (None when it is empty).
Source = Callable[[uuid.UUID | None], Awaitable[tuple[list[Item], uuid.UUID | None]]]


def _interaction_items(rows: Sequence[store.InteractionText]) -> list[Item]:
    return [
        (
            str(row.id),
            knowledge.interaction_text(row.query, row.response),
            {"agent_type": row.agent_type, "model": row.model_used},
        )
        for row in rows
    ]


def _error_items(rows: Sequence[store.InteractionText]) -> list[Item]:
    # Selected by the SQL twin of `knowledge.looks_like_error` (ILIKE on ERROR_HINTS), the one the count uses too.
    return [(str(row.id), knowledge.error_solution_text(row.query, row.response), {}) for row in rows]


def _pattern(row: store.PatternText) -> ExtractedPattern:
    return ExtractedPattern(row.problem_type, row.approach, row.skills, row.pattern, row.extractor)


def _sources(database: Database) -> dict[Collection, Source]:
    async def tracked(after: uuid.UUID | None) -> tuple[list[Item], uuid.UUID | None]:
        rows = await store.tracked_interactions(database, after=after, limit=PAGE)
        return _interaction_items(rows), rows[-1].id if rows else None

    async def solved(after: uuid.UUID | None) -> tuple[list[Item], uuid.UUID | None]:
        rows = await store.solved_errors(database, error_hints=knowledge.ERROR_HINTS, after=after, limit=PAGE)
        return _error_items(rows), rows[-1].id if rows else None

    async def patterns(after: uuid.UUID | None) -> tuple[list[Item], uuid.UUID | None]:
        rows = await store.pattern_texts(database, min_value=None, after=after, limit=PAGE)
        items: list[Item] = [
            (str(row.id), _pattern(row).text, {"problem_type": row.problem_type, "skills": list(row.skills)})
            for row in rows
        ]
        return items, rows[-1].id if rows else None

    async def best(after: uuid.UUID | None) -> tuple[list[Item], uuid.UUID | None]:
        rows = await store.pattern_texts(database, min_value=knowledge.BEST_PRACTICE_VALUE, after=after, limit=PAGE)
        items: list[Item] = [(str(row.id), _pattern(row).text, {"problem_type": row.problem_type}) for row in rows]
        return items, rows[-1].id if rows else None

    return {
        "interaction-history": tracked,
        "error-solutions": solved,
        "skills-patterns": patterns,
        "best-practices": best,
    }


async def rebuild_missing(
    database: Database, vectors: VectorIndex, embedder: Embedder, *, progress_every_seconds: float = 2.0
) -> dict[Collection, int]:
    """Write again every collection whose index holds fewer points than its rows in PostgreSQL, logging
    `rebuilding hybrid collections` with done/total at least every `progress_every_seconds`; returns the points
    written per rebuilt collection (empty when nothing was missing)."""
    sources = await store.knowledge_sources(
        database, error_hints=knowledge.ERROR_HINTS, best_min_value=knowledge.BEST_PRACTICE_VALUE
    )
    expected: dict[Collection, int] = {
        "interaction-history": sources.tracked_interactions,
        "error-solutions": sources.solved_errors,
        "skills-patterns": sources.patterns,
        "best-practices": sources.best_practices,
    }
    lacking: dict[Collection, int] = {}
    for collection, rows in expected.items():
        indexed = await vectors.count(knowledge.COLLECTIONS[collection])
        if indexed < rows:
            lacking[collection] = rows
    if not lacking:
        return {}
    total = sum(lacking.values())
    logger.warning(
        "Hybrid's vector index lacks points for rows PostgreSQL holds; rebuilding them",
        extra={"collections": sorted(lacking), "points_total": total},
    )
    done = 0
    progress = ProgressLog(logger, "rebuilding hybrid collections", unit="points", every_seconds=progress_every_seconds)

    def report(collection: Collection) -> None:
        progress.update(done, total, collection=collection)

    written: dict[Collection, int] = {}
    source_of = _sources(database)
    for collection in lacking:
        report(collection)
        written[collection] = 0
        after: uuid.UUID | None = None
        while True:
            items, last = await source_of[collection](after)
            if last is None:
                break
            await knowledge.put_texts(vectors, embedder, collection, items)
            written[collection] += len(items)
            done += len(items)
            after = last
            report(collection)
    logger.info("hybrid collections rebuilt", extra={"points": written})
    return written
