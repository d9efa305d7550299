"""Which fusion of the dense and lexical rankings retrieves best on the stdlib set (an experiment, not a gate).

Ingests the corpus once, fetches each query's dense and lexical chunk rankings, then scores fusion variants
offline: reciprocal rank fusion with several k and lexical weights, and a convex mix of min-max-normalised scores.

    python -m bench.retrieval_sweep [--queries N]
"""

import argparse
from collections.abc import Callable
from typing import Any

import anyio

from bench.aidb_support import DATA, aidb_client, candidate_lists, load_jsonl, write_result

DEPTH = 100
K = 10

Ranking = list[tuple[str, float]]  # (document id, score), best first


def rrf(k: float, lexical_weight: float) -> Callable[[Ranking, Ranking], list[str]]:
    def fuse(dense: Ranking, lexical: Ranking) -> list[str]:
        scores: dict[str, float] = {}
        for rank, (doc, _) in enumerate(dense, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        for rank, (doc, _) in enumerate(lexical, start=1):
            scores[doc] = scores.get(doc, 0.0) + lexical_weight / (k + rank)
        return sorted(scores, key=lambda d: -scores[d])

    return fuse


def convex(alpha: float) -> Callable[[Ranking, Ranking], list[str]]:
    def normalise(ranking: Ranking) -> dict[str, float]:
        if not ranking:
            return {}
        high, low = ranking[0][1], ranking[-1][1]
        span = (high - low) or 1.0
        return {doc: (score - low) / span for doc, score in ranking}

    def fuse(dense: Ranking, lexical: Ranking) -> list[str]:
        d, lx = normalise(dense), normalise(lexical)
        scores = {doc: alpha * d.get(doc, 0.0) + (1 - alpha) * lx.get(doc, 0.0) for doc in set(d) | set(lx)}
        return sorted(scores, key=lambda doc: -scores[doc])

    return fuse


def collapse(hits: list[tuple[str, float]]) -> Ranking:
    seen: dict[str, float] = {}
    for doc, score in hits:
        seen.setdefault(doc, score)
    return list(seen.items())


async def run(max_queries: int | None) -> dict[str, Any]:
    corpus = load_jsonl(DATA / "stdlib_corpus.jsonl")
    queries = load_jsonl(DATA / "stdlib_queries.jsonl")[:max_queries]
    variants: dict[str, Callable[[Ranking, Ranking], list[str]]] = {
        "dense_only": lambda dense, lexical: [doc for doc, _ in dense],
        "lexical_only": lambda dense, lexical: [doc for doc, _ in lexical],
    }
    for k in (10, 30, 60):
        for weight in (0.3, 0.5, 0.7, 1.0):
            variants[f"rrf_k{k}_w{weight}"] = rrf(k, weight)
    for alpha in (0.5, 0.6, 0.7, 0.8):
        variants[f"convex_a{alpha}"] = convex(alpha)
    async with aidb_client("edge") as (server, client):
        deps = server.deps
        id_of: dict[str, str] = {}
        for doc in corpus:
            result = await client.call_tool(
                "store_document", {"content": doc["content"], "title": doc["title"], "kind": "code"}
            )
            id_of[(result.structured_content or {})["document_id"]] = doc["id"]
        totals = {name: [0.0, 0] for name in variants}
        for query in queries:
            dense_hits, lexical_hits = await candidate_lists(deps, id_of, query["query"], DEPTH)
            lists = [collapse(dense_hits), collapse(lexical_hits)]
            for name, fuse in variants.items():
                top = fuse(lists[0], lists[1])[:K]
                if query["relevant"] in top:
                    totals[name][0] += 1.0 / (top.index(query["relevant"]) + 1)
                    totals[name][1] += 1
    n = len(queries)
    return {
        "benchmark": "fusion sweep on the stdlib set (document-level fusion of top-100 chunk rankings)",
        "queries": n,
        "variants": {
            name: {"mrr_at_10": round(t[0] / n, 4), "recall_at_10": round(t[1] / n, 4)} for name, t in totals.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=None)
    result = anyio.run(run, parser.parse_args().queries)
    write_result("retrieval_sweep", result)
    for name, values in sorted(result["variants"].items(), key=lambda kv: -kv[1]["mrr_at_10"]):
        print(f"{name:18s} MRR@10 {values['mrr_at_10']:.4f}  recall@10 {values['recall_at_10']:.4f}")


if __name__ == "__main__":
    main()
