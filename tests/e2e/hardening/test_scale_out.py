"""Scale-out: two replicas of AIDB, of Hybrid and of Ralph as separate processes sharing PostgreSQL and Redis.

Each replica has its own data dir. Clients reach the replicas through a loopback round-robin proxy (stateless
2026-07-28 era) or directly. Proven: one global rate limit across both replicas (Redis GCRA: admitted calls at
10x the rate stay within one replica's bound), writes through either replica are visible through both, and two
Ralph replicas with workers share one queue without running any iteration twice.

Search is per process with the embedded vector engine (Qdrant Edge is single-process): a document written
through replica A is readable through B at once (PostgreSQL is the source of truth) but B's *search* finds it
only after B's `reindex` (shown below) — replicas that must share search need a Qdrant server
(MCP_STACK_VECTORS__BACKEND=qdrant, MCP_STACK_VECTORS__URL); no Qdrant server binary exists on this machine.
"""

import contextlib
import json
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from mcp import Client

from bench.load import gcra_bound, offer
from mcp_servers.shared.config import StackSettings
from tests.e2e.hardening.processes import Served, served
from tests.e2e.hardening.proxy import round_robin_proxy
from tests.e2e.test_transports import issue_key
from tests.integration.ralph.ralph_support import PYTHON, PYTHON_PREFIX
from tests.support import http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

REDIS_URL = "redis://127.0.0.1:6379/0"
RATE_PER_SECOND = 5.0
BURST = 5
LOAD_SECONDS = 3.0
STATELESS = "2026-07-28"
PROBE_TOOL = {"aidb": "stats", "hybrid": "learning_stats", "ralph": "list_tasks"}


@contextlib.asynccontextmanager
async def replicas(
    name: str, settings: StackSettings, tmp_path: Path, extra: dict[str, str] | None = None
) -> AsyncIterator[tuple[Served, Served]]:
    """Two processes of one server on one database and one Redis, each with its own data dir."""
    common = {
        "MCP_STACK_RATE_LIMIT__REDIS_URL": REDIS_URL,
        "MCP_STACK_RATE_LIMIT__CALLS_PER_MINUTE": str(RATE_PER_SECOND * 60),
        "MCP_STACK_RATE_LIMIT__BURST": str(BURST),
        **(extra or {}),
    }
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for replica in ("a", "b"):
            env = common | {"MCP_STACK_DATA_DIR": str(tmp_path / f"{name}-{replica}")}
            started.append(await stack.enter_async_context(served(name, settings, tmp_path / "logs", env)))
        yield started[0], started[1]


async def assert_global_rate_limit(name: str, a: Served, b: Served, token: str) -> None:
    """10x the rate through the round-robin proxy from four clients: one replica's bound holds for both."""
    async with round_robin_proxy([a.url, b.url]) as proxy, contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(http_client(proxy.url, token, mode=STATELESS)) for _ in range(4)]
        calls = [lambda c=c: c.call_tool(PROBE_TOOL[name], {}) for c in clients]
        run = await offer(calls, RATE_PER_SECOND * 10, LOAD_SECONDS)
    assert not run.errors, run.errors[:5]
    assert proxy.served[a.url] > 0 and proxy.served[b.url] > 0, proxy.served
    # Without a shared budget each replica would admit its own burst + rate x time: about twice this bound.
    assert BURST <= run.admitted <= gcra_bound(RATE_PER_SECOND, BURST, run.elapsed_seconds + 1.0), run


def structured(result: object) -> dict[str, object]:
    assert not getattr(result, "is_error", True), result
    data = getattr(result, "structured_content", None)
    assert isinstance(data, dict), result
    return data


async def test_aidb_replicas_share_writes_and_one_rate_limit(module_settings: StackSettings, tmp_path: Path) -> None:
    token = await issue_key(module_settings, ["admin"])
    async with replicas("aidb", module_settings, tmp_path) as (a, b):
        marker = {"a": f"zebra{uuid.uuid4().hex[:8]}", "b": f"quokka{uuid.uuid4().hex[:8]}"}
        ids = {}
        async with http_client(a.url, token, mode=STATELESS) as ca, http_client(b.url, token, mode=STATELESS) as cb:
            for replica, client in (("a", ca), ("b", cb)):
                stored = await client.call_tool(
                    "store_document", {"content": f"{marker[replica]} written through replica {replica}"}
                )
                ids[replica] = str(structured(stored)["document_id"])
            for client in (ca, cb):
                for ident in ids.values():
                    structured(await client.call_tool("get_document", {"document_id": ident}))
                listed = structured(await client.call_tool("list_documents", {"limit": 100}))
                assert set(ids.values()) <= {str(d["id"]) for d in listed["documents"]}
            # Search is per replica (Edge): B finds A's document once B has rebuilt its index from PostgreSQL.
            structured(await cb.call_tool("reindex", {}))
            found = structured(await cb.call_tool("search", {"query": marker["a"], "limit": 5}))
            assert ids["a"] in {str(hit["document_id"]) for hit in found["hits"]}
        await assert_global_rate_limit("aidb", a, b, token)


async def test_hybrid_replicas_share_writes_and_one_rate_limit(module_settings: StackSettings, tmp_path: Path) -> None:
    token = await issue_key(module_settings, ["admin"])
    env = {"MCP_STACK_HYBRID__PIPELINE_ENABLED": "false"}
    async with replicas("hybrid", module_settings, tmp_path, env) as (a, b):
        async with http_client(a.url, token, mode=STATELESS) as ca, http_client(b.url, token, mode=STATELESS) as cb:
            before = structured(await cb.call_tool("learning_stats", {}))["interactions"]
            tracked = structured(
                await ca.call_tool(
                    "track_interaction",
                    {"query": "scale out?", "response": "yes", "agent_type": "local", "model_used": "m"},
                )
            )
            # Written through A, updated through B: B must see A's row.
            structured(
                await cb.call_tool(
                    "update_outcome", {"interaction_id": tracked["interaction_id"], "outcome": "success"}
                )
            )
            for client in (ca, cb):
                stats = structured(await client.call_tool("learning_stats", {}))
                assert stats["interactions"] == before + 1
                assert stats["interactions_with_outcome"] >= 1
        await assert_global_rate_limit("hybrid", a, b, token)


# Runs in Ralph's sandbox, where its workspace is the only writable place: it records each run there.
RECORDER = textwrap.dedent(
    """
    import sys, time
    task_id, iteration = sys.argv[1], sys.argv[2]
    time.sleep(0.3)
    with open("runs.log", "a", encoding="utf-8") as handle:
        handle.write(f"{task_id} {iteration}\\n")
    print("<promise>DONE</promise>")
    """
)


async def test_two_ralph_replicas_share_one_queue_without_double_work(
    module_settings: StackSettings, tmp_path: Path
) -> None:
    token = await issue_key(module_settings, ["admin"])
    programs = tmp_path / "programs"
    programs.mkdir()
    script = programs / "recorder.py"
    script.write_text(RECORDER, encoding="utf-8")
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    template = [PYTHON, str(script), "{task_id}", "{iteration}"]
    env = {
        "MCP_STACK_RALPH__WORKERS": "2",
        "MCP_STACK_RALPH__COMMAND_TEMPLATES": json.dumps({"default": template}),
        "MCP_STACK_RALPH__WORKSPACE_ROOTS": json.dumps([str(workspaces)]),
        "MCP_STACK_RALPH__SANDBOX_RO_BINDS": json.dumps([PYTHON_PREFIX, str(programs)]),
        "MCP_STACK_RATE_LIMIT__ENABLED": "false",
    }
    tasks = 12
    async with (
        replicas("ralph", module_settings, tmp_path, env) as (a, b),
        http_client(a.url, token, mode=STATELESS) as ca,
        http_client(b.url, token, mode=STATELESS) as cb,
    ):
        clients: list[Client] = [ca, cb]
        submitted = []
        for n in range(tasks):
            workspace = workspaces / f"task-{n}"
            workspace.mkdir()
            result = await clients[n % 2].call_tool(
                "submit_task",
                {
                    "prompt": f"task {n}",
                    "backend": "command",
                    "completion_promise": "DONE",
                    "max_iterations": 3,
                    "workspace": str(workspace),
                },
            )
            submitted.append(str(structured(result)["task_id"]))
        with anyio.fail_after(120):
            while True:
                statuses = [structured(await ca.call_tool("task_status", {"task_id": t}))["status"] for t in submitted]
                if all(status not in ("queued", "running") for status in statuses):
                    break
                await anyio.sleep(0.5)
    assert statuses == ["completed"] * tasks, statuses
    lines = [
        line.split()
        for n in range(tasks)
        for line in (workspaces / f"task-{n}" / "runs.log").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    runs = Counter((task, iteration) for task, iteration in lines)
    assert sorted(runs) == sorted((task, "1") for task in submitted), runs
    assert all(count == 1 for count in runs.values()), [key for key, count in runs.items() if count > 1]
    assert module_settings.postgres.dsn is not None
    connection = await asyncpg.connect(module_settings.postgres.dsn.get_secret_value())
    try:
        # worker ids are host:pid:random; a sandboxed agent cannot see its worker's pid, the queue records it.
        workers = await connection.fetchval(
            "SELECT count(DISTINCT split_part(worker_id, ':', 2)) FROM ralph_iterations"
            " WHERE task_id = ANY($1::uuid[])",
            submitted,
        )
    finally:
        await connection.close()
    assert workers >= 2, "one replica did all the work"
