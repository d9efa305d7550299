"""AIDB speed: ingest documents/s, and search p50/p95 at 100,000 chunks with and without query embedding.

1. Ingest: the first `--ingest-docs` stdlib documents through `store_document` (chunk, embed, PostgreSQL commit,
   index): documents/s end to end; then the same documents as files through `ingest_path` (batched).
2. Scale: grow the knowledge base to `--chunks` chunks through the real write path (PostgreSQL documents and
   chunks + outbox, drained by the indexer into the vector index). To keep this minutes, not hours, the extra
   chunks reuse the real chunk texts and embeddings of step 1 with a random perturbation (vectors) and extra
   words (BM25), 10 chunks per document.
3. Search through the MCP `search` tool (in-process client, query cache off): p50/p95 with a fresh query
   embedding, and with the query's embedding already computed (the embedding LRU warmed), i.e. excluding it.
4. Resident memory of this process (AIDB + vector engine + ONNX model; PostgreSQL is a separate process): VmRSS split
   into anonymous and file-backed, the same after `gc.collect()` + glibc `malloc_trim(0)` (what is live, without
   freed heap the allocator keeps), and the mapped vector-engine files by kind. The bench's own data is the few
   hundred seed chunks `bulk_fill` reuses (freed when it returns), so the anonymous memory is the server's.

    python -m bench.aidb [--chunks 100000] [--ingest-docs 300] [--queries 300] [--backend edge]
    python -m bench.aidb_vs_qdrant_mcp                 # the side-by-side run against mcp-server-qdrant 0.8.1
"""

import argparse
import collections
import ctypes
import ctypes.util
import gc
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.aidb_support import DATA, aidb_client, bulk_fill, load_jsonl, write_result
from mcp_servers.aidb.points import CHUNKS_COLLECTION


def memory() -> dict[str, int]:
    """Resident memory of this process: total, anonymous (heap), file-backed (mapped files, reclaimable), peak total."""
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                values[key.lower() + "_bytes"] = int(line.split()[1]) * 1024
    return values


def trimmed_memory() -> dict[str, int]:
    """`memory()` after a full GC and glibc `malloc_trim(0)`: live memory, without freed heap the allocator keeps."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    return memory()


# Files of a Qdrant Edge shard (`<root>/<collection>/shard/...`) by what they hold; first match wins.
_EDGE_FILE_KINDS = (
    ("wal", re.compile(r"^wal/")),
    ("dense vectors", re.compile(r"vector_storage-dense/")),
    ("sparse vectors", re.compile(r"vector_storage-bm25/")),
    ("hnsw graph", re.compile(r"vector_index-dense/")),
    ("sparse index", re.compile(r"vector_index-bm25/")),
    ("payload index", re.compile(r"payload_index/")),
    ("payload", re.compile(r"payload_storage/")),
    ("id tracker", re.compile(r"id_tracker")),
)
_SHARD_FILE = re.compile(r"/([^/]+)/shard/(?:segments/([0-9a-f-]+)/)?(.*)$")


def vector_file_memory() -> dict[str, Any]:
    """Resident bytes of the mapped vector-engine files by collection and kind, and segments mapped per collection."""
    rss: collections.Counter[str] = collections.Counter()
    segments: dict[str, set[str]] = collections.defaultdict(set)
    path: str | None = None
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split(None, 5)
            if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
                path = fields[5].strip() if len(fields) == 6 else None
            elif fields[0] == "Rss:" and path is not None:
                match = _SHARD_FILE.search(path.removesuffix(" (deleted)"))
                if match is None:
                    continue
                collection, segment, rest = match.groups()
                kind = next((name for name, pattern in _EDGE_FILE_KINDS if pattern.search(rest)), "other")
                rss[f"{collection}/{kind}"] += int(fields[1]) * 1024
                if segment:
                    segments[collection].add(segment)
    return {
        "rss_bytes_by_kind": dict(sorted(rss.items(), key=lambda item: -item[1])),
        "segments_mapped": {name: len(ids) for name, ids in sorted(segments.items())},
    }


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    corpus = load_jsonl(DATA / "stdlib_corpus.jsonl")
    queries = [q["query"] for q in load_jsonl(DATA / "stdlib_queries.jsonl")][: args.queries]
    phases: dict[str, dict[str, int]] = {}
    files = Path(tempfile.mkdtemp(prefix="mcpstack-bench-files-"))
    for doc in corpus[: args.ingest_docs]:
        (files / f"{doc['id']}.py").write_text(doc["content"], encoding="utf-8")
    async with aidb_client(args.backend, allowed_roots=[files]) as (server, client):
        deps = server.deps
        phases["started"] = memory()
        began = time.perf_counter()
        for doc in corpus[: args.ingest_docs]:
            result = await client.call_tool(
                "store_document", {"content": doc["content"], "title": doc["title"], "kind": "code"}
            )
            assert not result.is_error, result.content
        ingest_seconds = time.perf_counter() - began
        ingest_rate = args.ingest_docs / ingest_seconds
        # The same documents as files through ingest_path (batched), into a project of their own.
        began = time.perf_counter()
        result = await client.call_tool("ingest_path", {"path": str(files), "glob": "*.py", "project": "files"})
        assert not result.is_error and (result.structured_content or {})["created"] == args.ingest_docs, result
        ingest_path_rate = args.ingest_docs / (time.perf_counter() - began)
        shutil.rmtree(files)
        phases["after_ingest"] = memory()

        scale = await bulk_fill(deps, args.chunks)
        total_chunks = await deps.vectors.count(CHUNKS_COLLECTION)
        phases["after_100k_chunks"] = memory()
        vector_files_after_fill = vector_file_memory()

        async def timed_search(query: str, mode: str) -> float:
            began = time.perf_counter()
            result = await client.call_tool("search", {"query": query, "mode": mode, "limit": 10})
            elapsed = time.perf_counter() - began
            assert not result.is_error, result.content
            return elapsed

        latencies: dict[str, dict[str, float]] = {}
        for mode in ("hybrid", "dense", "lexical"):
            # Fresh texts for "with embedding": a suffix the LRU has never seen.
            with_embedding = [await timed_search(f"{q} ({mode})", mode) for q in queries] if mode != "lexical" else []
            for q in queries:
                await deps.searcher.embed_query(q)
            without = [await timed_search(q, mode) for q in queries]
            row = {
                "p50_ms_without_embedding": round(statistics.median(without) * 1000, 2),
                "p95_ms_without_embedding": round(percentile(without, 0.95) * 1000, 2),
            }
            if with_embedding:
                row["p50_ms_with_embedding"] = round(statistics.median(with_embedding) * 1000, 2)
                row["p95_ms_with_embedding"] = round(percentile(with_embedding, 0.95) * 1000, 2)
            latencies[mode] = row
        phases["after_searches"] = memory()
        phases["after_searches_trimmed"] = trimmed_memory()
        vector_files = vector_file_memory()
    return {
        "benchmark": "aidb speed",
        "backend": args.backend,
        "ingest": {
            "documents": args.ingest_docs,
            "seconds": round(ingest_seconds, 2),
            "documents_per_second": round(ingest_rate, 2),
            "ingest_path_documents_per_second": round(ingest_path_rate, 2),
        },
        "scale": {"chunks_indexed": total_chunks, **scale},
        "search_via_mcp_in_process": latencies,
        "memory": phases,
        "vector_files_after_fill": vector_files_after_fill,
        "vector_files_after_searches": vector_files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--ingest-docs", type=int, default=300)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--backend", choices=["edge", "qdrant"], default="edge")
    args = parser.parse_args()
    result = anyio.run(run, args)
    path = write_result(f"aidb_{args.backend}", result)
    ingest = result["ingest"]
    print(
        f"ingest: {ingest['documents_per_second']} documents/s one store_document call each, "
        f"{ingest['ingest_path_documents_per_second']} through ingest_path"
    )
    print(f"chunks indexed: {result['scale']['chunks_indexed']}")
    for mode, row in result["search_via_mcp_in_process"].items():
        print(f"{mode:8s} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    hybrid = result["search_via_mcp_in_process"]["hybrid"]["p50_ms_without_embedding"]
    print(f"hybrid p50 excluding embedding {hybrid} ms (target <= 15 ms)")
    for phase in ("after_searches", "after_searches_trimmed"):
        final = result["memory"][phase]
        print(
            f"{phase}: rss {final['vmrss_bytes'] / 2**30:.2f} GiB (anonymous {final['rssanon_bytes'] / 2**30:.2f} "
            f"GiB, mapped files {final['rssfile_bytes'] / 2**30:.2f} GiB; target <= 1.2 GiB)"
        )
    files = result["vector_files_after_searches"]
    print(f"segments mapped: {files['segments_mapped']}")
    resident = ", ".join(f"{kind} {size / 2**20:.0f} MiB" for kind, size in files["rss_bytes_by_kind"].items())
    print(f"vector files resident: {resident}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
