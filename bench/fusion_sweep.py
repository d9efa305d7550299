"""Which hybrid fusion retrieves best, and keeps scores comparable across queries (an experiment, not a gate).

Stores a corpus once (the stdlib set, or a seeded sample of the long-document set), keeps each query's top-100
dense and lexical chunk hits, then scores fusion variants offline, each on MRR@10 and recall@10, and on how well
its top score separates real queries from off-topic and gibberish ones (`NONSENSE`): the threshold that keeps
most real queries while dropping every nonsense one.

Variants: today's min-max convex mix (per query, so the top hit is always ~1.0), and calibrated mixes
`w * cosine + (1 - w) * bm25 / (bm25 + c)` whose document score may add a share of its second-best chunk, or a
share of how many of the document's chunks are among each side's candidates (document-level evidence).

    python -m bench.fusion_sweep [--corpus stdlib|long] [--documents N] [--queries N] [--hits FILE]

`--hits FILE` keeps the candidate lists: the first run writes them, later runs rescore them without storing again.
"""

import argparse
import json
import math
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from bench.aidb_support import DATA, aidb_client, candidate_lists, load_jsonl, write_result
from bench.aidb_vs_qdrant_mcp import long_corpus

DEPTH = 100
K = 10

# Questions nobody would ask these corpora, and gibberish: their top hybrid score should stay below min_score.
OFF_TOPIC = [
    "best pizza dough recipe with a sourdough starter",
    "who painted the ceiling of the sistine chapel",
    "symptoms of a common cold in toddlers",
    "cheap flights to lisbon in october",
    "how to grow tomatoes on a balcony",
    "knitting pattern for a warm winter scarf",
    "horse riding lessons for beginners near me",
    "what wine goes well with grilled salmon",
    "how many calories are in a banana",
    "train my puppy to stop barking at night",
    "wedding dress colours for a summer ceremony",
    "when does the tennis season start",
]


def gibberish(count: int, seed: int = 5) -> list[str]:
    """Strings of made-up words (deterministic)."""
    rng = random.Random(seed)
    return [
        " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) for _ in range(rng.randint(2, 5)))
        for _ in range(count)
    ]


NONSENSE = OFF_TOPIC + gibberish(12)

Hits = list[tuple[str, float]]  # (document id, chunk score), best first
Fusion = Callable[[Hits, Hits], list[tuple[str, float]]]


def per_document(hits: Hits, second: float) -> dict[str, float]:
    """Best chunk score per document, plus `second` times its second-best."""
    best: dict[str, list[float]] = {}
    for doc, score in hits:
        scores = best.setdefault(doc, [])
        if len(scores) < 2:
            scores.append(score)
    return {doc: s[0] + (second * s[1] if len(s) > 1 else 0.0) for doc, s in best.items()}


def min_max(alpha: float) -> Fusion:
    """Today's fusion: per-query min-max of each side's best-chunk scores, convex mix."""

    def normalise(scores: dict[str, float]) -> dict[str, float]:
        if not scores:
            return {}
        high, low = max(scores.values()), min(scores.values())
        return {d: 1.0 if high == low else (s - low) / (high - low) for d, s in scores.items()}

    def fuse(dense: Hits, lexical: Hits) -> list[tuple[str, float]]:
        d, lx = normalise(per_document(dense, 0.0)), normalise(per_document(lexical, 0.0))
        scores = {doc: alpha * d.get(doc, 0.0) + (1 - alpha) * lx.get(doc, 0.0) for doc in d.keys() | lx.keys()}
        return sorted(scores.items(), key=lambda kv: -kv[1])

    return fuse


def calibrated(alpha: float, saturation: float, second: float) -> Fusion:
    """alpha * cosine + (1 - alpha) * bm25 / (bm25 + saturation), per document (best + `second` x second-best)."""

    def fuse(dense: Hits, lexical: Hits) -> list[tuple[str, float]]:
        d = per_document(dense, second)
        lx = {doc: s / (s + saturation) for doc, s in per_document(lexical, second).items()}
        scores = {doc: alpha * d.get(doc, 0.0) + (1 - alpha) * lx.get(doc, 0.0) for doc in d.keys() | lx.keys()}
        return sorted(scores.items(), key=lambda kv: -kv[1])

    return fuse


def with_mass(alpha: float, saturation: float, beta: float) -> Fusion:
    """The calibrated mix plus `beta` x the share of each side's candidates that are the document's chunks
    (log-scaled): a document that many candidate chunks come from is about the query as a whole."""

    def mass(hits: Hits) -> dict[str, float]:
        counts: dict[str, int] = {}
        for doc, _ in hits:
            counts[doc] = counts.get(doc, 0) + 1
        return {doc: math.log1p(n) / math.log1p(DEPTH) for doc, n in counts.items()}

    def fuse(dense: Hits, lexical: Hits) -> list[tuple[str, float]]:
        d, lx = per_document(dense, 0.0), {doc: s / (s + saturation) for doc, s in per_document(lexical, 0.0).items()}
        md, ml = mass(dense), mass(lexical)
        scores = {
            doc: alpha * d.get(doc, 0.0)
            + (1 - alpha) * lx.get(doc, 0.0)
            + beta * (md.get(doc, 0.0) + ml.get(doc, 0.0)) / 2
            for doc in d.keys() | lx.keys()
        }
        return sorted(scores.items(), key=lambda kv: -kv[1])

    return fuse


def variants() -> dict[str, Fusion]:
    """Every fusion the sweep scores."""
    found: dict[str, Fusion] = {
        "dense_only": lambda dense, lexical: sorted(per_document(dense, 0.0).items(), key=lambda kv: -kv[1]),
        "lexical_only": lambda dense, lexical: sorted(per_document(lexical, 0.0).items(), key=lambda kv: -kv[1]),
        "minmax_a0.6 (today)": min_max(0.6),
    }
    for alpha in (0.5, 0.6, 0.7):
        for saturation in (10.0, 20.0, 40.0):
            for second in (0.0, 0.1):
                found[f"cal_a{alpha}_c{saturation:g}_s{second}"] = calibrated(alpha, saturation, second)
    for beta in (0.05, 0.1, 0.2):
        found[f"cal_a0.5_c40_mass{beta}"] = with_mass(0.5, 40.0, beta)
    return found


def separation(real_top: list[float], nonsense_top: list[float]) -> dict[str, float]:
    """The lowest threshold above every nonsense query's top score, and the share of real queries it keeps."""
    threshold = max(nonsense_top, default=0.0)
    kept = sum(1 for s in real_top if s > threshold) / max(1, len(real_top))
    ordered = sorted(real_top)
    low = ordered[len(ordered) // 20] if ordered else 0.0
    return {"nonsense_max": round(threshold, 4), "real_kept_above_it": round(kept, 4), "real_top_p05": round(low, 4)}


async def run(
    corpus_name: str,
    documents: int | None,
    max_queries: int | None,
    products: set[str] | None,
    aidb: dict[str, Any],
) -> dict[str, Any]:
    """Store the corpus and collect each query's candidates: {"documents", "real", "nonsense"}."""
    if corpus_name == "stdlib":
        corpus = load_jsonl(DATA / "stdlib_corpus.jsonl")
        queries = load_jsonl(DATA / "stdlib_queries.jsonl")[:max_queries]
        kind = "code"
    else:
        corpus, queries = long_corpus(documents, max_queries, products)
        kind = "doc"
    async with aidb_client("edge", **aidb) as (server, client):
        deps = server.deps
        id_of: dict[str, str] = {}
        for doc in corpus:
            result = await client.call_tool(
                "store_document", {"content": doc["content"], "title": doc["title"], "kind": kind}
            )
            assert not result.is_error, result.content
            id_of[(result.structured_content or {})["document_id"]] = doc["id"]

        real = [(query["relevant"], await candidate_lists(deps, id_of, query["query"], DEPTH)) for query in queries]
        nonsense = [await candidate_lists(deps, id_of, text, DEPTH) for text in NONSENSE]
    return {"documents": len(corpus), "real": real, "nonsense": nonsense}


def as_hits(rows: list[list[Any]]) -> Hits:
    return [(str(doc), float(score)) for doc, score in rows]


def score_all(corpus_name: str, candidates: dict[str, Any]) -> dict[str, Any]:
    """Every variant's MRR@10, recall@10 and separation on the collected candidates."""
    real = [(relevant, (as_hits(d), as_hits(lx))) for relevant, (d, lx) in candidates["real"]]
    nonsense = [(as_hits(d), as_hits(lx)) for d, lx in candidates["nonsense"]]
    documents = candidates["documents"]
    results: dict[str, Any] = {}
    for name, fuse in variants().items():
        reciprocal = found = 0.0
        real_top: list[float] = []
        for relevant, (dense, lexical) in real:
            ranked = fuse(dense, lexical)
            top = [doc for doc, _ in ranked[:K]]
            real_top.append(ranked[0][1] if ranked else 0.0)
            if relevant in top:
                reciprocal += 1.0 / (top.index(relevant) + 1)
                found += 1
        nonsense_top = [(fuse(d, lx) or [("", 0.0)])[0][1] for d, lx in nonsense]
        results[name] = {
            "mrr_at_10": round(reciprocal / len(real), 4),
            "recall_at_10": round(found / len(real), 4),
            **separation(real_top, nonsense_top),
        }
    return {
        "benchmark": f"hybrid fusion sweep on the {corpus_name} set (document-level fusion of top-100 chunk hits)",
        "documents": documents,
        "queries": len(real),
        "nonsense_queries": len(NONSENSE),
        "variants": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", choices=["stdlib", "long"], default="stdlib")
    parser.add_argument("--documents", type=int, default=None, help="long corpus: a seeded sample of N documents")
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--products", default="", help="long corpus: comma-separated products to keep")
    parser.add_argument("--chunk-overlap", type=int, default=None, help="AIDB chunk_overlap_tokens (a lever)")
    parser.add_argument("--output", default=None, help="result name under bench/results/")
    parser.add_argument("--hits", type=Path, default=None, help="candidate lists: written once, then rescored")
    args = parser.parse_args()
    products = set(filter(None, args.products.split(","))) or None
    aidb = {} if args.chunk_overlap is None else {"chunk_overlap_tokens": args.chunk_overlap}
    if args.hits is not None and args.hits.exists():
        candidates = json.loads(args.hits.read_text(encoding="utf-8"))
    else:
        candidates = anyio.run(run, args.corpus, args.documents, args.queries, products, aidb)
        if args.hits is not None:
            args.hits.write_text(json.dumps(candidates), encoding="utf-8")
    result = score_all(args.corpus, candidates)
    result["products"] = sorted(products or [])
    result["aidb_settings"] = aidb
    write_result(args.output or f"fusion_sweep_{args.corpus}", result)
    for name, values in sorted(result["variants"].items(), key=lambda kv: -kv[1]["mrr_at_10"]):
        print(f"{name:26s} " + "  ".join(f"{k} {v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
