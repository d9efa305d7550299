"""`make bench`: run every benchmark with small default sizes, then print one table of ratios against anchors.

Each benchmark runs as `python -m bench.<name> ...` in its own process (one failing does not stop the others) and
writes bench/results/<name>.json; this moves each fresh file to bench/results/make-bench/ (putting back the
full-size result a benchmark run alone left there) and compares each headline figure with an anchor measured
in the same run (a bare MCP server, the unloaded p99, a PostgreSQL round trip or commit, dense retrieval, a search
without query embedding). The table goes to stdout and bench/results/summary.json.

    python -m bench [--only overhead,load] [--skip retrieval] [--timeout 1800]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SMALL_RESULTS = RESULTS / "make-bench"


@dataclass(frozen=True)
class Row:
    """One line of the table: figure / anchor = ratio, read against a target."""

    bench: str
    figure: str
    value: float
    anchor: str
    anchor_value: float
    unit: str
    target: str

    @property
    def ratio(self) -> float:
        return self.value / self.anchor_value if self.anchor_value else float("nan")


def _get(data: dict[str, Any], path: str) -> float:
    value: Any = data
    for key in path.split("."):
        value = value[key]
    return float(value)


def overhead_rows(d: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("in_process", "in-process"), ("http_legacy", "HTTP legacy"), ("http_2026-07-28", "HTTP 2026")):
        if key in d["results"]:
            r = d["results"][key]
            rows.append(
                Row(
                    "overhead",
                    f"stack server p50 ({label})",
                    _get(r, "stack.p50_ms"),
                    "bare MCPServer p50",
                    _get(r, "bare.p50_ms"),
                    "ms",
                    "<= 1.10",
                )
            )
    return rows


def aidb_rows(d: dict[str, Any]) -> list[Row]:
    search = d["search_via_mcp_in_process"]
    return [
        Row("aidb", "hybrid search p50 incl. query embedding", search["hybrid"]["p50_ms_with_embedding"],
            "same search, embedding cached", search["hybrid"]["p50_ms_without_embedding"], "ms", "informative"),
        Row("aidb", "hybrid search p50 (embedding cached)", search["hybrid"]["p50_ms_without_embedding"],
            "lexical search p50", search["lexical"]["p50_ms_without_embedding"], "ms", "abs <= 15 ms"),
        Row("aidb", "ingest_path documents/s", d["ingest"]["ingest_path_documents_per_second"],
            "store_document one by one", d["ingest"]["documents_per_second"], "docs/s", "informative"),
    ]  # fmt: skip


def retrieval_rows(d: dict[str, Any]) -> list[Row]:
    modes = d["modes"]
    return [
        Row("retrieval", "hybrid MRR@10", modes["hybrid"]["mrr_at_10"], "dense MRR@10", modes["dense"]["mrr_at_10"],
            "", ">= 1.00"),
        Row("retrieval", "hybrid recall@10", modes["hybrid"]["recall_at_10"], "dense recall@10",
            modes["dense"]["recall_at_10"], "", ">= 1.00"),
    ]  # fmt: skip


def long_rows(d: dict[str, Any]) -> list[Row]:
    ours, theirs = d["aidb"], d["mcp_server_qdrant"]
    tokens = d["embedded_tokens_per_second_one_by_one"]
    return [
        Row("long", "hybrid MRR@10 (long documents)", ours["hybrid"]["mrr_at_10"], "dense MRR@10",
            ours["dense"]["mrr_at_10"], "", ">= +0.05 abs"),
        Row("long", "store_document documents/s, one at a time", ours["ingest_store_one_by_one"],
            "mcp-server-qdrant qdrant-store", theirs["ingest_store_one_by_one"], "/s", ">= 1.00"),
        Row("long", "embedded tokens/s, one at a time", tokens["aidb"], "mcp-server-qdrant tokens/s",
            tokens["mcp_server_qdrant"], "", "informative"),
        Row("long", "hybrid search p50 over stdio", ours["hybrid"]["search_p50_ms"], "qdrant-find p50",
            theirs["search_p50_ms"], "ms", "<= 1.00"),
    ]  # fmt: skip


def hybrid_rows(d: dict[str, Any]) -> list[Row]:
    r = d["results"]["routing"]
    return [
        Row("hybrid", "routing overhead p50 excl. LLM", _get(r, "overhead_excluding_llm.async_commit.p50_ms"),
            "PostgreSQL SELECT 1 p50", _get(r, "select_1_right_after_an_llm_call.p50_ms"), "ms", "abs <= 2 ms"),
    ]  # fmt: skip


def ralph_rows(d: dict[str, Any]) -> list[Row]:
    r = d["results"]
    return [
        Row("ralph", "loop overhead per iteration p50", _get(r, "loop_overhead_one_task.p50_ms"),
            "PostgreSQL durable commit p50", _get(r, "postgres_commit.durable_commit_p50_ms"), "ms", "abs <= 5 ms"),
    ]  # fmt: skip


def load_rows(d: dict[str, Any]) -> list[Row]:
    r = d["results"]
    return [
        Row("load", "p99 admitted calls at 10x rate", _get(r, "loaded_10x.p99_ms"), "unloaded p99",
            _get(r, "unloaded.p99_ms"), "ms", "<= 3.00"),
        Row("load", "admitted calls at 10x rate", _get(r, "loaded_10x.admitted"), "GCRA bound",
            _get(r, "gcra_bound"), "", "<= 1.00"),
    ]  # fmt: skip


@dataclass(frozen=True)
class Bench:
    name: str
    args: list[str]
    result_file: str
    rows: Callable[[dict[str, Any]], list[Row]]


# Small but meaningful sizes: minutes in total on two cores (retrieval ingests its whole 1,463-document corpus).
BENCHES = (
    Bench("overhead", ["--calls", "600", "--rounds", "3"], "overhead.json", overhead_rows),
    Bench("aidb", ["--chunks", "5000", "--ingest-docs", "100", "--queries", "100"], "aidb_edge.json", aidb_rows),
    Bench("retrieval", ["--queries", "200"], "retrieval_edge.json", retrieval_rows),
    # The long-document set (bench/data/build_long_set.py) against mcp-server-qdrant, on a 30-document sample.
    Bench(
        "aidb_vs_qdrant_mcp",
        ["--corpus", "long", "--documents", "30"],
        "aidb_vs_qdrant_mcp_long.json",
        long_rows,
    ),
    Bench("hybrid", ["--calls", "300", "--events", "3000"], "hybrid.json", hybrid_rows),
    Bench("ralph", ["--iterations", "100", "--tasks", "20", "--task-iterations", "10"], "ralph.json", ralph_rows),
    Bench("load", ["--seconds", "6"], "load.json", load_rows),
)


def run(bench: Bench, timeout: float) -> tuple[str, float]:
    """Run one benchmark; returns (status, seconds). Its output streams through."""
    began = time.perf_counter()
    print(f"\n=== bench.{bench.name} {' '.join(bench.args)}", flush=True)
    try:
        completed = subprocess.run([sys.executable, "-m", f"bench.{bench.name}", *bench.args], timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - began
    status = "ok" if completed.returncode == 0 else f"exit {completed.returncode}"
    return status, time.perf_counter() - began


def table(rows: list[Row]) -> str:
    header = f"{'bench':<10} {'figure':<42} {'value':>10} {'anchor':<32} {'anchor':>10} {'ratio':>7}  target"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.bench:<10} {row.figure:<42} {row.value:>8.3f}{row.unit:>2} {row.anchor:<32} "
            f"{row.anchor_value:>8.3f}{row.unit:>2} {row.ratio:>7.3f}  {row.target}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names to run")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    skip = {name for name in args.skip.split(",") if name}
    chosen = [b for b in BENCHES if (not only or b.name in only) and b.name not in skip]
    runs: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for bench in chosen:
        path = RESULTS / bench.result_file
        kept = path.read_bytes() if path.is_file() else None
        started = time.time()
        status, seconds = run(bench, args.timeout)
        fresh = path.is_file() and path.stat().st_mtime >= started
        if status == "ok" and not fresh:
            status = f"no fresh {bench.result_file}"
        runs[bench.name] = {"status": status, "seconds": round(seconds, 1), "args": bench.args}
        small = SMALL_RESULTS / bench.result_file
        if fresh:
            SMALL_RESULTS.mkdir(parents=True, exist_ok=True)
            small.write_bytes(path.read_bytes())
            if kept is not None:
                path.write_bytes(kept)
        if status == "ok":
            try:
                rows.extend(bench.rows(json.loads(small.read_text(encoding="utf-8"))))
            except (KeyError, TypeError, ValueError) as exc:
                runs[bench.name]["status"] = f"unreadable result: {type(exc).__name__}: {exc}"
    print("\n" + table(rows))
    for name, info in runs.items():
        print(f"  bench.{name}: {info['status']} in {info['seconds']} s")
    summary = {
        "benchmark": "summary",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "runs": runs,
        "rows": [{**row.__dict__, "ratio": round(row.ratio, 4)} for row in rows],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'summary.json'}")
    if any(info["status"] != "ok" for info in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
