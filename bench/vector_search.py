"""Qdrant Edge search latency and recall at ~100k chunks (384-d), through the async `EdgeVectorIndex` adapter.

Synthetic but shaped like real chunks: dense vectors drawn around topic centres, ~50 chunks each (embeddings
cluster; pure Gaussian noise is HNSW's worst case), texts of ~120 Zipf-distributed words encoded by our BM25.
Latency includes the worker-thread hop; embedding is excluded. Dense recall@10 is against exact numpy search.

    python -m bench.vector_search [--points 100000] [--queries 300] [--hnsw-ef 64] [--spread 0.6] [--keep DIR]
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from mcp_servers.shared.vectors.bm25 import document_vector, query_vector
from mcp_servers.shared.vectors.edge import EdgeTuning, EdgeVectorIndex
from mcp_servers.shared.vectors.ids import point_id
from mcp_servers.shared.vectors.port import VectorPoint

DIM = 384
VOCABULARY = 30_000
WORDS_PER_CHUNK = 120
# ~50 chunks per topic, so a query's true top 10 are clearly closer than the rest (a recall worth measuring).
CHUNKS_PER_TOPIC = 50
COLLECTION = "bench"


def _words(rng: np.random.Generator) -> list[str]:
    # Pronounceable pseudo-words, so the tokenizer treats them like text (no digits, no stop words).
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "hi", "ja"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables, size=int(rng.integers(2, 5)))))
    return sorted(words)


def _data(points: int, seed: int, spread: float) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    topics = max(points // CHUNKS_PER_TOPIC, 1)
    centres = rng.standard_normal((topics, DIM)).astype(np.float32)
    topic = rng.integers(0, topics, size=points)
    dense = centres[topic] + spread * rng.standard_normal((points, DIM)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    vocabulary = _words(rng)
    ranks = np.minimum(rng.zipf(1.2, size=(points, WORDS_PER_CHUNK)), VOCABULARY) - 1
    texts = [" ".join(vocabulary[r] for r in row) for row in ranks]
    return dense, texts, topic, vocabulary


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> tuple[list[float], list[Any]]:
    latencies, results = [], []
    for call in calls:
        start = time.perf_counter()
        results.append(await call())
        latencies.append(time.perf_counter() - start)
    return latencies, results


async def _ingest(index: EdgeVectorIndex, dense: np.ndarray, texts: list[str], report: dict[str, Any]) -> None:
    points = len(texts)
    start = time.perf_counter()
    sparse = [document_vector(text) for text in texts]
    report["bm25_docs_per_second"] = round(points / (time.perf_counter() - start))
    start = time.perf_counter()
    batch = 2_000
    for offset in range(0, points, batch):
        chunk = [
            VectorPoint(
                id=point_id("bench", n),
                dense=dense[n].tolist(),
                sparse=sparse[n],
                payload={"n": n, "project": f"p{n % 10}"},
            )
            for n in range(offset, min(offset + batch, points))
        ]
        await index.upsert(COLLECTION, chunk)
    report["upsert_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    await index.optimize(COLLECTION)
    report["final_optimize_seconds"] = round(time.perf_counter() - start, 1)


async def run(points: int, queries: int, root: Path, tuning: EdgeTuning, spread: float) -> dict[str, Any]:
    report: dict[str, Any] = {
        "points": points,
        "dimension": DIM,
        "spread": spread,
        "machine": platform.machine(),
        "tuning": repr(tuning),
    }
    start = time.perf_counter()
    dense, texts, topic, vocabulary = _data(points, seed=7, spread=spread)
    report["generate_seconds"] = round(time.perf_counter() - start, 1)

    index = EdgeVectorIndex(root, tuning=tuning)
    try:
        await index.ensure_collection(COLLECTION, DIM)
        if await index.count(COLLECTION) != points:
            await _ingest(index, dense, texts, report)

        rng = np.random.default_rng(11)
        picks = rng.integers(0, points, size=queries)
        # Noise of norm ~0.5 on unit vectors: a query resembles its source chunk's topic, not the chunk itself.
        query_dense = dense[picks] + (0.5 / np.sqrt(DIM)) * rng.standard_normal((queries, DIM)).astype(np.float32)
        query_dense /= np.linalg.norm(query_dense, axis=1, keepdims=True)
        query_texts = [" ".join(rng.choice(texts[p].split(), size=3)) for p in picks]
        dense_lists = [q.tolist() for q in query_dense]
        sparse_queries = [query_vector(text) for text in query_texts]

        def search(mode: str, n: int, filters: dict[str, Any] | None = None) -> Callable[[], Awaitable[Any]]:
            return lambda: index.search(
                COLLECTION,
                dense=dense_lists[n] if mode != "lexical" else None,
                sparse=sparse_queries[n] if mode != "dense" else None,
                mode=mode,  # type: ignore[arg-type]
                limit=10,
                filters=filters,
            )

        # Warm the page cache and thread pool; a server answers many queries, not one cold one.
        await _timed([search("hybrid", n) for n in range(min(20, queries))])
        # Modes alternate query by query, so background load hits them alike.
        modes = {"dense": None, "lexical": None, "hybrid": None, "hybrid_filtered_10pct": {"project": "p3"}}
        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        dense_hits = []
        for n in range(queries):
            for name, filters in modes.items():
                mode = name.split("_")[0]
                spent, (hits,) = await _timed([search(mode, n, filters)])
                latencies[name] += spent
                if name == "dense":
                    dense_hits.append({hit.payload["n"] for hit in hits})
        for name, samples in latencies.items():
            report[name] = _percentiles(samples)
        exact = np.argsort(-(dense @ query_dense.T), axis=0)[:10].T
        recall = np.mean([len(set(row.tolist()) & got) / 10 for row, got in zip(exact, dense_hits, strict=True)])
        report["dense_recall_at_10"] = round(float(recall), 3)
    finally:
        await index.close()
    report["vocabulary"] = len(vocabulary)
    report["topics"] = len(set(topic.tolist()))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--hnsw-ef", type=int, default=EdgeTuning().hnsw_ef)
    parser.add_argument("--segments", type=int, default=EdgeTuning().default_segment_number)
    parser.add_argument("--spread", type=float, default=0.6, help="noise around topic centres; higher = harder")
    parser.add_argument("--keep", type=Path, help="keep the store here; a later run with the same data reuses it")
    args = parser.parse_args()
    tuning = EdgeTuning(hnsw_ef=args.hnsw_ef, default_segment_number=args.segments)
    if args.keep:
        report = anyio.run(run, args.points, args.queries, args.keep, tuning, args.spread)
    else:
        with tempfile.TemporaryDirectory(prefix="vector-bench-") as tmp:
            report = anyio.run(run, args.points, args.queries, Path(tmp), tuning, args.spread)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
