"""Cost of the shared middleware: a trivial tool through the full stack vs a bare MCPServer, side by side.

Both servers run in this process on the same event loop; calls alternate in rounds (bare, stack, bare, ...)
so drift hits both. In-process via `Client(server)`, and over Streamable HTTP (uvicorn on 127.0.0.1) with the
stack's bearer auth, scopes, rate limit, metrics and request ids switched on.

    python -m bench.overhead [--calls 2000] [--rounds 5]
"""

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import anyio
import httpx
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from mcp_servers.shared.annotations import READ_ONLY
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.harness import Core, ReadinessCheck, StackServer, build_core
from mcp_servers.shared.postgres.pool import Database
from tests.pg_fixtures import fresh_database, postgres_server
from tests.support import bind_loopback, http_client, serve_app

RESULTS = Path(__file__).parent / "results"


class Echo(BaseModel):
    text: str


async def echo_impl(text: str) -> Echo:
    return Echo(text=text)


def bare_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("bare")

    @server.tool(name="echo")
    async def echo(text: Annotated[str, Field(max_length=100)]) -> Echo:
        """Echo."""
        return await echo_impl(text)

    return server


@dataclass(frozen=True)
class NoDeps:
    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}


@contextlib.asynccontextmanager
async def open_nothing(core: Core, database: Database) -> AsyncIterator[NoDeps]:
    yield NoDeps()


def stack_server(settings: StackSettings) -> StackServer[NoDeps]:
    server = StackServer(build_core("aidb", settings), instructions="bench", open_deps=open_nothing)

    @server.tool("echo", annotations=READ_ONLY)
    async def echo(text: Annotated[str, Field(max_length=100)]) -> Echo:
        """Echo."""
        return await echo_impl(text)

    return server


@dataclass
class Series:
    samples: list[float]

    def summary(self, wall_seconds: float) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "p50_ms": round(statistics.median(ordered) * 1000, 4),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 4),
            "calls_per_second": round(len(ordered) / wall_seconds, 1),
        }


async def time_calls(call: Callable[[], Awaitable[object]], count: int, series: Series) -> float:
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        await call()
        series.samples.append(time.perf_counter() - start)
    return time.perf_counter() - began


async def compare(label: str, bare: Client, stack: Client, calls: int, rounds: int) -> dict[str, Any]:
    for client in (bare, stack):  # warm-up: imports, caches, connection pools
        for _ in range(50):
            await client.call_tool("echo", {"text": "warm"})
    series = {"bare": Series([]), "stack": Series([])}
    wall = {"bare": 0.0, "stack": 0.0}
    for _ in range(rounds):
        for name, client in (("bare", bare), ("stack", stack)):

            async def call(client: Client = client) -> object:
                result = await client.call_tool("echo", {"text": "hello"})
                assert not result.is_error
                return result

            wall[name] += await time_calls(call, calls // rounds, series[name])
    bare_summary = series["bare"].summary(wall["bare"])
    stack_summary = series["stack"].summary(wall["stack"])
    ratio = stack_summary["p50_ms"] / bare_summary["p50_ms"]
    print(
        f"{label:<22} bare p50 {bare_summary['p50_ms']:.3f} ms  stack p50 {stack_summary['p50_ms']:.3f} ms  "
        f"ratio {ratio:.3f}  (p95 {bare_summary['p95_ms']:.3f} / {stack_summary['p95_ms']:.3f} ms, "
        f"{bare_summary['calls_per_second']:.0f} / {stack_summary['calls_per_second']:.0f} calls/s)"
    )
    return {"bare": bare_summary, "stack": stack_summary, "p50_ratio": round(ratio, 4)}


class RawModernClient:
    """One JSON-RPC POST per call in the stateless 2026-07-28 era, with httpx: the server's cost without the SDK
    client's (which adds tens of ms per call here, identically for both servers)."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str | None) -> None:
        self._http = http
        self._url = f"{url}/mcp"
        self._headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }
        self._ids = itertools.count(1)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> SimpleNamespace:
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        body = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta},
        }
        response = await self._http.post(self._url, json=body, headers={**self._headers, "Mcp-Name": name})
        response.raise_for_status()
        return SimpleNamespace(is_error=bool(response.json()["result"].get("isError")))


@contextlib.asynccontextmanager
async def postgres_dsn() -> AsyncIterator[str]:
    """A fresh database for this run: on MCP_STACK_TEST_DSN's server if set, else on an embedded server."""
    async with postgres_server() as server, fresh_database(server, None) as dsn:
        yield dsn


async def main(calls: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with postgres_dsn() as dsn:
        sock = bind_loopback()
        port = sock.getsockname()[1]
        settings = load_settings(
            data_dir=Path("/tmp/mcpstack-bench-data"),
            postgres={"dsn": dsn},
            http={"aidb_port": port},
            rate_limit={"calls_per_minute": 1_000_000, "burst": 100_000},
            observability={"log_level": "WARNING"},
        )
        stack = stack_server(settings)
        bare = bare_server()
        async with Client(bare) as bare_client, Client(stack.mcp) as stack_client:
            results["in_process"] = await compare("in-process", bare_client, stack_client, calls, rounds)
            token = (await KeyStore(stack.database).create("bench", ["read"])).token
            bare_app = bare.streamable_http_app()
            async with serve_app(stack.http_app(), sock) as stack_url, serve_app(bare_app) as bare_url:
                for mode in ("legacy", "2026-07-28"):
                    async with (
                        http_client(bare_url, None, mode=mode) as b,
                        http_client(stack_url, token, mode=mode) as s,
                    ):
                        results[f"http_{mode}"] = await compare(f"http ({mode})", b, s, calls // 2, rounds)
                async with httpx.AsyncClient(timeout=30) as http:
                    raw_bare = RawModernClient(http, bare_url, None)
                    raw_stack = RawModernClient(http, stack_url, token)
                    results["http_raw_2026-07-28"] = await compare(
                        "http raw (2026-07-28)",
                        raw_bare,
                        raw_stack,
                        calls // 2,
                        rounds,  # type: ignore[arg-type]
                    )
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = anyio.run(main, args.calls, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "overhead",
        "target": "stack p50 <= 1.10 x bare p50",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "calls": args.calls,
        "results": results,
    }
    (RESULTS / "overhead.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'overhead.json'}")


if __name__ == "__main__":
    cli()
