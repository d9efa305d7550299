"""Shared set-up of the AIDB benchmarks: a real AIDB server (embedded PostgreSQL, chosen vector backend, ONNX
embedder) in a throwaway data dir, reached through the in-process MCP client.

`MCP_STACK_BENCH_DSN` (a PostgreSQL database you can write to, e.g. a fresh one on the machine's server) replaces
the embedded server.
"""

import contextlib
import json
import os
import platform
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from mcp import Client

from mcp_servers.aidb import store
from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.points import CHUNKS_COLLECTION
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.harness import StackServer, build_core
from mcp_servers.shared.vectors.bm25 import query_vector
from mcp_servers.shared.vectors.ids import point_id

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json with the machine's description added."""
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def aidb_client(
    backend: str = "edge", *, data_dir: Path | None = None, **aidb: Any
) -> AsyncIterator[tuple[StackServer[AidbDeps], Client]]:
    """An AIDB server and a client connected in-process; a fresh data dir (removed afterwards) unless given."""
    keep = data_dir is not None
    if data_dir is None:
        # /tmp, not a home dir: as root the embedded PostgreSQL runs as another user who must reach its data dir.
        data_dir = Path(tempfile.mkdtemp(prefix="mcpstack-bench-"))
        os.chmod(data_dir, 0o755)
    try:
        overrides: dict[str, Any] = {
            "data_dir": data_dir,
            "vectors": {"backend": backend},
            "rate_limit": {"enabled": False},
            "aidb": {"cache_ttl_seconds": 0, **aidb},
        }
        dsn = os.environ.get("MCP_STACK_BENCH_DSN")
        if dsn:
            overrides["postgres"] = {"dsn": dsn}
        server = create_server(build_core("aidb", load_settings(**overrides)))
        async with Client(server.mcp) as client:
            yield server, client
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


CHUNKS_PER_DOCUMENT = 10
WRITE_CONCURRENCY = 2


async def candidate_lists(
    deps: AidbDeps, id_of: dict[str, str], text: str, depth: int
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """A query's top `depth` dense and lexical chunk hits, live in PostgreSQL, as (corpus id, score) best first
    (lexical is empty for a query with no searchable words); `id_of` maps AIDB's document ids to the corpus's."""
    dense_vector = await deps.embedder.embed_query(text)
    sparse = query_vector(text)
    found: list[list[tuple[str, float]]] = []
    for mode in ("dense", "lexical"):
        if mode == "lexical" and not sparse.indices:
            found.append([])
            continue
        hits = await deps.vectors.search(
            CHUNKS_COLLECTION,
            dense=dense_vector if mode == "dense" else None,
            sparse=sparse if mode == "lexical" else None,
            mode=mode,
            limit=depth,
        )
        live = await store.chunks_by_point(deps.database, [h.id for h in hits])
        found.append([(id_of[live[h.id].document_id], h.score) for h in hits if h.id in live])
    return found[0], found[1]


async def bulk_fill(deps: AidbDeps, total_chunks: int, *, seed: int = 7) -> dict[str, float]:
    """Grow the knowledge base to `total_chunks` through the real write path, without re-embedding.

    Extra documents (10 chunks each) reuse the stored chunks' texts and embeddings with a small random
    perturbation (vectors) and extra words (BM25); PostgreSQL writes and the outbox drain are real.
    """
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    seeds = await store.all_chunks(deps.database, project=None, after=None, limit=100_000)
    seed_vectors = np.array([store.unpack_vector(chunk.embedding) for chunk in seeds], dtype=np.float32)
    words = sorted({w for chunk in seeds for w in chunk.text.split() if w.isalpha() and len(w) > 3})
    documents_needed = max(0, (total_chunks - len(seeds)) // CHUNKS_PER_DOCUMENT)
    limiter = anyio.Semaphore(WRITE_CONCURRENCY)

    async def write(number: int) -> None:
        async with limiter:
            # Built inside the limiter: thousands of tasks holding their data at once would inflate memory.
            picks = [rng.randrange(len(seeds)) for _ in range(CHUNKS_PER_DOCUMENT)]
            noise = np_rng.normal(0, 0.02, size=(CHUNKS_PER_DOCUMENT, seed_vectors.shape[1])).astype(np.float32)
            vectors = seed_vectors[picks] + noise
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            texts = [f"{seeds[p].text} {' '.join(rng.sample(words, 8))} synthetic{number}" for p in picks]
            digest = f"{number:064x}"
            chunks = [
                store.NewChunk(point_id("bench", digest, i), i, "", 1, text, vector.tolist())
                for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
            ]
            document = store.NewDocument(
                str(uuid.uuid4()), "bench", "doc", f"synthetic {number}", None, "\n\n".join(texts), digest, {}, "bench"
            )
            for attempt in range(5):
                try:
                    await store.write_document(deps.database, document, chunks)
                    break
                except DependencyUnavailable as exc:
                    # This shared VM stalls PostgreSQL for seconds at times; the write is idempotent (content hash).
                    if attempt == 4:
                        raise
                    await anyio.sleep(max(2.0, exc.retry_after_seconds))

    began = time.perf_counter()
    for start in range(0, documents_needed, 500):
        async with anyio.create_task_group() as tg:
            for number in range(start, min(start + 500, documents_needed)):
                tg.start_soon(write, number)
    write_seconds = time.perf_counter() - began
    began = time.perf_counter()
    await deps.indexer.drain()
    optimize = getattr(deps.vectors, "optimize", None)
    if optimize is not None:
        await optimize(CHUNKS_COLLECTION)
    return {
        "bulk_documents": documents_needed,
        # The bench's own data (freed when this returns): a few hundred chunks, so RssAnon is the server's.
        "seed_chunks": len(seeds),
        "pg_write_seconds": round(write_seconds, 1),
        "index_drain_seconds": round(time.perf_counter() - began, 1),
    }
