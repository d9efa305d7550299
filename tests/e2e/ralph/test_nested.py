"""Nested orchestration: AIDB, Hybrid and Ralph as separate `mcp-stack serve` processes over Streamable HTTP.

A Ralph task on the `hybrid` backend asks Hybrid's `route_query` each iteration, with context from AIDB's `search`;
Hybrid routes to a scripted OpenAI-compatible LLM, which answers with the completion promise only once the prompt
carries the AIDB document and the previous answer. The interactions show up in Hybrid's learning stats. Each
process exports its spans over OTLP/HTTP to the test, and each iteration is one trace across the three processes.
"""

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.support import VENV_BIN, free_port, http_client, serve_app, wait_http_ok

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

CODEWORD = "PINEAPPLE-7"


class ScriptedLlm:
    """Says the promise only when the prompt has the AIDB context and the previous answer."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def handle(self, request: Request) -> Response:
        body = json.loads(await request.body())
        prompt = "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
        self.prompts.append(prompt)
        if CODEWORD in prompt and "Your previous answer" in prompt:
            text = f"Deployed with codeword {CODEWORD}. <promise>SHIPPED</promise>"
        else:
            text = f"Working on it (attempt {len(self.prompts)})."
        return JSONResponse(
            {
                "id": "x",
                "model": "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
            }
        )


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


class Collector:
    """An OTLP/HTTP traces endpoint (protobuf) keeping every span it receives, with its process's service name."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []

    async def handle(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource_spans in export.resource_spans:
            attributes = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans += [
                    ExportedSpan(
                        attributes["service.name"],
                        span.name,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                    )
                    for span in scope_spans.spans
                ]
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def traces_of(self, root_name: str) -> list[tuple[ExportedSpan, dict[str, ExportedSpan]]]:
        """Each span named `root_name` with every span of its trace, by span id."""
        return [
            (root, {span.span_id: span for span in self.spans if span.trace_id == root.trace_id})
            for root in self.spans
            if root.name == root_name
        ]


@contextlib.asynccontextmanager
async def serve(name: str, env: dict[str, str], port: int, log: Path) -> AsyncIterator[Process]:
    """`mcp-stack serve NAME --transport http`; wait for /health; SIGTERM on exit."""
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            [str(VENV_BIN / "mcp-stack"), "serve", name, "--transport", "http", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            await wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=180)
            yield process
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(15):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def call(url: str, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with http_client(url, token, mode="2026-07-28") as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_ralph_task_on_hybrid_with_aidb_context_completes_across_three_processes(
    stack_settings: StackSettings, tmp_path: Path
) -> None:
    assert stack_settings.postgres.dsn is not None
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        token = (await KeyStore(database).create("e2e-nested", ["write"])).token
    llm = ScriptedLlm()
    collector = Collector()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", llm.handle, methods=["POST"]),
            Route("/v1/traces", collector.handle, methods=["POST"]),
        ]
    )
    ports = {name: free_port() for name in ("aidb", "hybrid", "ralph")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    base = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    base |= {
        "MCP_STACK_POSTGRES__DSN": stack_settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(stack_settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "INFO",
        "MCP_STACK_RATE_LIMIT__ENABLED": "false",
    }
    async with serve_app(app) as llm_url:
        base["MCP_STACK_OBSERVABILITY__OTLP_ENDPOINT"] = f"{llm_url}/v1/traces"
        hybrid_env = base | {
            "MCP_STACK_HYBRID__BACKENDS": json.dumps(
                [{"name": "local", "kind": "local", "base_url": f"{llm_url}/v1", "model": "scripted"}]
            ),
            "MCP_STACK_HYBRID__AIDB_URL": f"{urls['aidb']}/mcp",
            "MCP_STACK_HYBRID__AIDB_API_KEY": token,
        }
        ralph_env = base | {
            "MCP_STACK_RALPH__HYBRID_URL": f"{urls['hybrid']}/mcp",
            "MCP_STACK_RALPH__HYBRID_API_KEY": token,
            "MCP_STACK_RALPH__AIDB_URL": f"{urls['aidb']}/mcp",
            "MCP_STACK_RALPH__AIDB_API_KEY": token,
            "MCP_STACK_RALPH__CONTROL_POLL_SECONDS": "0.1",
        }
        async with (
            serve("aidb", base, ports["aidb"], tmp_path / "aidb.log"),
            serve("hybrid", hybrid_env, ports["hybrid"], tmp_path / "hybrid.log"),
            serve("ralph", ralph_env, ports["ralph"], tmp_path / "ralph.log"),
        ):
            await call(
                urls["aidb"],
                token,
                "store_document",
                content=f"# Release procedure\n\nThe deployment codeword for the release is {CODEWORD}.",
                title="Release procedure",
            )
            with anyio.fail_after(60):  # AIDB indexes asynchronously (outbox)
                while not (await call(urls["aidb"], token, "search", query="release deployment codeword"))["hits"]:
                    await anyio.sleep(0.2)
            before = await call(urls["hybrid"], token, "learning_stats")
            submitted = await call(
                urls["ralph"],
                token,
                "submit_task",
                prompt="Ship the release using the deployment codeword.",
                backend="hybrid",
                completion_promise="SHIPPED",
                max_iterations=5,
            )
            with anyio.fail_after(120):
                while True:
                    task = await call(urls["ralph"], token, "task_status", task_id=submitted["task_id"])
                    if task["status"] not in ("queued", "running"):
                        break
                    await anyio.sleep(0.2)
            after = await call(urls["hybrid"], token, "learning_stats")

            def complete(root: ExportedSpan, spans: dict[str, ExportedSpan]) -> bool:
                names = {span.name for span in spans.values()}
                return {"tools/call search", "tools/call route_query", "tools/call update_outcome"} <= names

            with anyio.fail_after(30):  # each process's batch exporter sends every few seconds
                while sum(complete(*found) for found in collector.traces_of("ralph.iteration")) < 2:
                    await anyio.sleep(0.2)
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == ("completed", "promise_found", 2)
    assert task["cost_known"] is True
    assert CODEWORD in llm.prompts[0] and "Your previous answer" not in llm.prompts[0]
    # One interaction per iteration, each with the outcome Ralph reported; Hybrid's own learning may add more
    # (a success is mined for a pattern through the LLM).
    assert after["interactions"] - before["interactions"] >= 2
    assert after["routing_decisions"] - before["routing_decisions"] >= 2
    assert after["interactions_with_outcome"] - before["interactions_with_outcome"] >= 2
    # One trace per iteration, rooted in Ralph; AIDB's and Hybrid's server spans are children of Ralph's client
    # spans, which are children of the iteration: the traceparent crossed the processes in `_meta`.
    traces = collector.traces_of("ralph.iteration")
    assert len(traces) == 2
    for iteration, spans in traces:
        assert (iteration.service, iteration.parent_span_id) == ("mcp-stack-ralph", "")
        for name, service in [
            ("tools/call search", "mcp-stack-aidb"),
            ("tools/call route_query", "mcp-stack-hybrid"),
            ("tools/call update_outcome", "mcp-stack-hybrid"),
        ]:
            [server] = [span for span in spans.values() if span.name == name]
            client = spans[server.parent_span_id]
            assert (server.service, client.service, client.name) == (service, "mcp-stack-ralph", f"MCP send {name}")
            assert client.parent_span_id == iteration.span_id
