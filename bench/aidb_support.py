"""Shared set-up of the AIDB benchmarks: a real AIDB server (embedded PostgreSQL, chosen vector backend, ONNX
embedder) in a throwaway data dir, reached through the in-process MCP client.

`MCP_STACK_BENCH_DSN` (a PostgreSQL database you can write to, e.g. a fresh one on the machine's server) replaces
the embedded server.
"""

import contextlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp import Client

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.harness import StackServer, build_core

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
async def aidb_client(backend: str = "edge", **aidb: Any) -> AsyncIterator[tuple[StackServer[AidbDeps], Client]]:
    """An AIDB server with a fresh data dir (removed afterwards) and a client connected in-process."""
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
        shutil.rmtree(data_dir, ignore_errors=True)
