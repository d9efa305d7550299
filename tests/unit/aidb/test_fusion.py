"""Hybrid fusion: a convex mix of each document's cosine and saturated BM25 score, never rescaled per query."""

from datetime import UTC, datetime

import pytest

from mcp_servers.aidb.search import DEFAULT_LEXICAL_SATURATION, Ranked, fuse
from mcp_servers.aidb.store import ChunkRecord


def ranked(doc: str, score: float, point: str = "") -> Ranked:
    chunk = ChunkRecord(
        point_id=point or f"p-{doc}",
        document_id=doc,
        chunk_index=0,
        heading="",
        start_line=1,
        text=doc,
        embedding=b"",
        title=doc,
        project="p",
        kind="doc",
        source=None,
        metadata={},
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return Ranked(score=score, chunk=chunk)


def test_documents_found_by_both_sides_rank_first() -> None:
    dense = {"a": ranked("a", 0.9), "b": ranked("b", 0.8), "c": ranked("c", 0.1)}
    lexical = {"b": ranked("b", 12.0), "d": ranked("d", 3.0)}
    fused = fuse(dense, lexical, 0.6, 20.0)
    order = sorted(fused, key=lambda doc: -fused[doc].score)
    assert order[0] == "b"
    assert fused["b"].score == pytest.approx(0.6 * 0.8 + 0.4 * 12.0 / 32.0)
    assert fused["a"].score == pytest.approx(0.6 * 0.9)
    assert fused["c"].score == pytest.approx(0.06)
    assert fused["d"].score == pytest.approx(0.4 * 3.0 / 23.0)
    assert set(fused) == {"a", "b", "c", "d"}


def test_weight_one_is_dense_order_and_zero_is_lexical_order() -> None:
    dense = {"a": ranked("a", 0.9), "b": ranked("b", 0.5)}
    lexical = {"a": ranked("a", 1.0), "b": ranked("b", 5.0)}
    assert max(fuse(dense, lexical, 1.0).items(), key=lambda kv: kv[1].score)[0] == "a"
    assert max(fuse(dense, lexical, 0.0).items(), key=lambda kv: kv[1].score)[0] == "b"


def test_scores_are_not_rescaled_per_query() -> None:
    # A lone weak candidate stays weak (min-max made it 1.0), so min_score can drop a query nothing matches.
    weak = fuse({"a": ranked("a", 0.12)}, {"a": ranked("a", 0.5)}, 0.6)
    assert weak["a"].score == pytest.approx(0.6 * 0.12 + 0.4 * 0.5 / (0.5 + DEFAULT_LEXICAL_SATURATION))
    assert weak["a"].score < 0.1
    # The same document scores the same whatever else the query found.
    alone = fuse({"a": ranked("a", 0.7)}, {}, 0.6)
    crowded = fuse({"a": ranked("a", 0.7), "b": ranked("b", 0.2)}, {"b": ranked("b", 40.0)}, 0.6)
    assert alone["a"].score == pytest.approx(crowded["a"].score)


def test_hybrid_scores_stay_below_one() -> None:
    fused = fuse({"a": ranked("a", 1.0)}, {"a": ranked("a", 1e6)}, 0.6)
    assert 0.99 < fused["a"].score < 1.0


def test_the_dense_chunk_is_shown_when_both_sides_match() -> None:
    fused = fuse({"a": ranked("a", 0.9, "dense-chunk")}, {"a": ranked("a", 2.0, "lexical-chunk")}, 0.5)
    assert fused["a"].chunk.point_id == "dense-chunk"
