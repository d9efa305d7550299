"""One OpenTelemetry trace across the stack (SEP-414: W3C trace context in each request's `_meta`).

AIDB and Hybrid run in this process behind real uvicorn servers on loopback ports, and Ralph's worker calls them
over Streamable HTTP, so trace context crosses the wire exactly as between processes; all three servers' spans go
to one in-memory exporter (the tracer provider is process-wide). A server span whose parent is a remote span
context got it from the request's `_meta`, not from this process's context variables.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.hybrid.conftest import ScriptedLlm, scripted_llm
from tests.integration.ralph.ralph_support import call, wait_for_status
from tests.support import bind_loopback, http_client, serve_app, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Every span this process finishes, while this module's tests run."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    # The provider can be set once per process: fail here, not with an empty exporter, if another test did.
    assert trace.get_tracer_provider() is provider
    yield spans
    spans.shutdown()  # later tests' spans are dropped, not kept


@contextlib.asynccontextmanager
async def aidb_and_hybrid(stack_settings: StackSettings, llm: ScriptedLlm) -> AsyncIterator[dict[str, Any]]:
    """AIDB and Hybrid (with AIDB context, on the scripted LLM) over HTTP; settings in which Ralph calls both."""
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        token = (await KeyStore(database).create("tracing", ["write"])).token
    aidb_sock, hybrid_sock = bind_loopback(), bind_loopback()
    aidb_url = f"http://127.0.0.1:{aidb_sock.getsockname()[1]}/mcp"
    hybrid_url = f"http://127.0.0.1:{hybrid_sock.getsockname()[1]}/mcp"
    settings = load_settings(
        data_dir=stack_settings.data_dir,
        postgres=stack_settings.postgres.model_dump(),
        rate_limit={"enabled": False},
        hybrid={
            "backends": [{"name": "local", "kind": "local", "base_url": llm.url, "model": "local-model"}],
            "pipeline_enabled": False,
            "aidb_url": aidb_url,
            "aidb_api_key": token,
        },
        ralph={
            "workers": 1,
            "control_poll_seconds": 0.1,
            "hybrid_url": hybrid_url,
            "hybrid_api_key": token,
            "aidb_url": aidb_url,
            "aidb_api_key": token,
        },
    )
    aidb = create_aidb(build_core("aidb", settings))
    hybrid = create_hybrid(build_core("hybrid", settings))
    async with serve_app(aidb.http_app(), aidb_sock), serve_app(hybrid.http_app(), hybrid_sock) as hybrid_base:
        yield {"settings": settings, "token": token, "hybrid": hybrid_base}


def in_trace(spans: Sequence[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [span for span in spans if span.context is not None and span.context.trace_id == root.context.trace_id]


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, sorted(span.name for span in spans))
    return found[0]


def assert_child(child: ReadableSpan, parent: ReadableSpan, *, remote: bool) -> None:
    """`child` is a direct child of `parent`; `remote`: the link came over the wire (from `_meta`)."""
    assert child.parent is not None and parent.context is not None, (child.name, parent.name)
    assert child.parent.span_id == parent.context.span_id, (child.name, parent.name)
    assert child.parent.is_remote is remote, child.name


def assert_call(trace_spans: Sequence[ReadableSpan], caller: ReadableSpan, tool: str) -> ReadableSpan:
    """The caller's client span for `tool` and the server span it parents over HTTP; returns the server span."""
    client = only(trace_spans, f"MCP send tools/call {tool}")
    server = only(trace_spans, f"tools/call {tool}")
    assert (client.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert_child(client, caller, remote=False)
    assert_child(server, client, remote=True)
    assert server.attributes is not None and server.attributes["gen_ai.tool.name"] == tool
    return server


async def test_a_ralph_iteration_is_one_trace_through_hybrid_and_aidb(
    stack_settings: StackSettings, exporter: InMemorySpanExporter
) -> None:
    async with scripted_llm("local") as llm, aidb_and_hybrid(stack_settings, llm) as stack:
        ralph = create_ralph(build_core("ralph", stack["settings"]))
        async with Client(ralph.mcp) as client:
            submitted = await call(
                client, "submit_task", prompt="Ship it.", backend="hybrid", completion_promise="DONE", max_iterations=1
            )
            task = await wait_for_status(client, submitted["task_id"])

            def iterations() -> list[ReadableSpan]:
                return [
                    span
                    for span in exporter.get_finished_spans()
                    if span.name == "ralph.iteration"
                    and span.attributes is not None
                    and span.attributes["ralph.task.id"] == submitted["task_id"]
                ]

            async def iteration_ended() -> bool:
                return bool(iterations())

            await wait_until(iteration_ended)  # the task is recorded finished just before its iteration span ends
    assert (task["status"], task["iterations_done"]) == ("limit_reached", 1)
    assert len(llm.requests) == 1  # Hybrid really routed the iteration to the LLM
    [iteration] = iterations()
    assert iteration.parent is None and iteration.kind is SpanKind.INTERNAL  # a new trace per iteration
    assert iteration.attributes is not None
    assert (iteration.attributes["ralph.iteration.number"], iteration.attributes["ralph.backend"]) == (1, "hybrid")
    spans = in_trace(exporter.get_finished_spans(), iteration)
    # Ralph -> AIDB search (the iteration's context), Ralph -> Hybrid route_query, Ralph -> Hybrid update_outcome.
    assert_call(spans, iteration, "search")
    assert_call(spans, iteration, "route_query")
    assert_call(spans, iteration, "update_outcome")
    # Every span of the trace hangs off the iteration: nothing orphaned, nothing from another request.
    ids = {span.context.span_id for span in spans if span.context is not None}
    assert all(span.parent.span_id in ids for span in spans if span.parent is not None)
    assert only(spans, "ralph.iteration") is iteration
    # The submit_task request that created the task is its own trace, not the iteration's parent.
    assert all(span.name != "tools/call submit_task" for span in spans)


async def test_a_hybrid_tool_calling_aidb_continues_its_callers_trace(
    stack_settings: StackSettings, exporter: InMemorySpanExporter
) -> None:
    async with scripted_llm("local") as llm, aidb_and_hybrid(stack_settings, llm) as stack:
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("caller") as caller:
            async with http_client(stack["hybrid"], stack["token"], mode="2026-07-28") as client:
                result = await client.call_tool("augment_query", {"query": "how is billing deployed?"})
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["aidb_used"], result.structured_content["notes"]
    root = only(exporter.get_finished_spans(), "caller")
    assert root.context is not None and root.context.trace_id == caller.get_span_context().trace_id
    spans = in_trace(exporter.get_finished_spans(), root)
    augment = assert_call(spans, root, "augment_query")
    # Hybrid's own call to AIDB is a child of Hybrid's server span, and AIDB's span a child of that call.
    assert_call(spans, augment, "search")
