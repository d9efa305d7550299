"""Retrieval quality of AIDB on the stdlib docstring set: MRR@10 and recall@10 for dense, lexical and hybrid.

Stores the corpus through `store_document` (real chunking, MiniLM embeddings, BM25), then runs every query in
each mode through `search`. The relevant document of a query is the one whose summary it is.

    python -m bench.retrieval [--backend edge|qdrant] [--queries N]
"""

import argparse
import time
from typing import Any

import anyio

from bench.aidb_support import DATA, aidb_client, load_jsonl, write_result

MODES = ("dense", "lexical", "hybrid")
K = 10


async def run(backend: str, max_queries: int | None) -> dict[str, Any]:
    corpus = load_jsonl(DATA / "stdlib_corpus.jsonl")
    queries = load_jsonl(DATA / "stdlib_queries.jsonl")[:max_queries]
    async with aidb_client(backend) as (_, client):
        began = time.perf_counter()
        id_of: dict[str, str] = {}
        for doc in corpus:
            result = await client.call_tool(
                "store_document", {"content": doc["content"], "title": doc["title"], "kind": "code"}
            )
            assert not result.is_error, result.content
            id_of[(result.structured_content or {})["document_id"]] = doc["id"]
        ingest_seconds = time.perf_counter() - began
        metrics: dict[str, dict[str, float]] = {}
        for mode in MODES:
            reciprocal_ranks = []
            found = 0
            began = time.perf_counter()
            for query in queries:
                result = await client.call_tool("search", {"query": query["query"], "mode": mode, "limit": K})
                hits = [id_of.get(hit["document_id"]) for hit in (result.structured_content or {}).get("hits", [])]
                rank = hits.index(query["relevant"]) + 1 if query["relevant"] in hits else None
                reciprocal_ranks.append(1.0 / rank if rank else 0.0)
                found += rank is not None
            metrics[mode] = {
                "mrr_at_10": round(sum(reciprocal_ranks) / len(queries), 4),
                "recall_at_10": round(found / len(queries), 4),
                "seconds_per_query": round((time.perf_counter() - began) / len(queries), 5),
            }
    return {
        "benchmark": "aidb retrieval quality (stdlib docstrings: summary -> rest of docstring)",
        "backend": backend,
        "documents": len(corpus),
        "queries": len(queries),
        "ingest_seconds": round(ingest_seconds, 1),
        "modes": metrics,
        "hybrid_minus_dense_mrr": round(metrics["hybrid"]["mrr_at_10"] - metrics["dense"]["mrr_at_10"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["edge", "qdrant"], default="edge")
    parser.add_argument("--queries", type=int, default=None)
    args = parser.parse_args()
    result = anyio.run(run, args.backend, args.queries)
    path = write_result(f"retrieval_{args.backend}", result)
    for mode, values in result["modes"].items():
        print(f"{mode:8s} MRR@10 {values['mrr_at_10']:.4f}  recall@10 {values['recall_at_10']:.4f}")
    print(f"hybrid - dense MRR@10: {result['hybrid_minus_dense_mrr']:+.4f} (target >= +0.03); wrote {path}")


if __name__ == "__main__":
    main()
