"""Ralph over Streamable HTTP in both protocol eras, with scoped keys; and the hybrid backend when Hybrid is down."""

from collections.abc import Callable

import anyio
import pytest
from mcp import Client, MCPError

from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.ralph.server import create_server
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.llm.port import NO_LLM_CONFIGURED
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.peer_support import REFUSAL, build_peer_server
from tests.integration.ralph.ralph_support import call, read_iterations, wait_for_status
from tests.support import bind_loopback, free_port, http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def issue(settings: StackSettings, scopes: list[str]) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("ralph-test", scopes)).token


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_submit_and_follow_a_task_over_http_with_scoped_keys(
    ralph_settings: Callable[..., StackSettings], mode: str
) -> None:
    sock = bind_loopback()
    base = ralph_settings()
    settings = base.model_copy(update={"http": base.http.model_copy(update={"ralph_port": sock.getsockname()[1]})})
    writer, reader = await issue(settings, ["ralph:write"]), await issue(settings, ["read"])
    server = create_server(build_core("ralph", settings))
    async with serve_app(server.http_app(), sock) as url:
        async with http_client(url, writer, mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            submitted = await call(
                client, "submit_task", prompt="x", backend="command:instant", completion_promise="OK", max_iterations=2
            )
            task = await wait_for_status(client, submitted["task_id"])
        async with http_client(url, reader, mode=mode) as client:
            status = await call(client, "task_status", task_id=submitted["task_id"])
            with pytest.raises(MCPError) as refused:
                await client.call_tool("stop_task", {"task_id": submitted["task_id"]})
    assert tools == {"submit_task", "task_status", "list_tasks", "stop_task", "approve_task"}
    assert (task["status"], status["status"]) == ("completed", "completed")
    assert refused.value.error.code == PERMISSION_DENIED


async def test_hybrid_backend_with_hybrid_unreachable_fails_after_consecutive_failures(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings(
        hybrid_url=f"http://127.0.0.1:{free_port()}/mcp", max_consecutive_failures=2, mcp_timeout_seconds=5
    )
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        submitted = await call(
            client, "submit_task", prompt="ask hybrid", backend="hybrid", completion_promise="X", max_iterations=5
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == (
        "failed",
        "backend_unavailable",
        2,
    )
    assert task["detail"].startswith("backend unreachable for 2 iterations in a row: hybrid is unavailable")
    assert all("hybrid is unavailable" in (item["error"] or "") for item in iterations)


async def test_hybrid_without_an_llm_ends_the_task_at_once_as_backend_unavailable(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    hybrid_settings = ralph_settings()  # the stack's defaults: Hybrid has no LLM backend configured
    token = await issue(hybrid_settings, ["write"])
    hybrid = create_hybrid(build_core("hybrid", hybrid_settings))
    async with serve_app(hybrid.http_app()) as hybrid_url:
        settings = ralph_settings(hybrid_url=f"{hybrid_url}/mcp", hybrid_api_key=token, mcp_timeout_seconds=10)
        server = create_server(build_core("ralph", settings))
        async with Client(server.mcp) as client:
            submitted = await call(
                client, "submit_task", prompt="ask hybrid", backend="hybrid", completion_promise="X", max_iterations=5
            )
            task = await wait_for_status(client, submitted["task_id"])
    assert NO_LLM_CONFIGURED in task["detail"], task
    assert (task["status"], task["completion_reason"], task["iterations_done"]) == (
        "failed",
        "backend_unavailable",
        1,
    )
    assert NO_LLM_CONFIGURED in task["detail"], task


async def test_hybrid_backend_records_hybrids_tool_error_as_the_iterations_error(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    peer_settings = ralph_settings()
    token = await issue(peer_settings, ["read"])
    release = anyio.Event()
    async with serve_app(build_peer_server(peer_settings, release).http_app()) as hybrid_url:
        settings = ralph_settings(
            hybrid_url=f"{hybrid_url}/mcp", hybrid_api_key=token, max_consecutive_failures=2, mcp_timeout_seconds=10
        )
        server = create_server(build_core("ralph", settings))
        async with Client(server.mcp) as client:
            submitted = await call(
                client, "submit_task", prompt="ask hybrid", backend="hybrid", completion_promise="X", max_iterations=5
            )
            task = await wait_for_status(client, submitted["task_id"])
            iterations = await read_iterations(client, submitted["task_id"])
        release.set()
    assert (task["status"], task["completion_reason"]) == ("failed", "consecutive_failures")
    assert [item["error"] for item in iterations] == ["route_query reported an error"] * 2
    assert all(REFUSAL in item["output"] for item in iterations)


async def test_a_hybrid_task_with_aidb_context_needs_the_submitters_aidb_read(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    sock = bind_loopback()
    # Nothing listens on the peers' ports: every task here parks awaiting approval, so no iteration runs.
    base = ralph_settings(
        hybrid_url=f"http://127.0.0.1:{free_port()}/mcp", aidb_url=f"http://127.0.0.1:{free_port()}/mcp"
    )
    settings = base.model_copy(update={"http": base.http.model_copy(update={"ralph_port": sock.getsockname()[1]})})
    ralph_only, with_aidb = await issue(settings, ["ralph:write"]), await issue(settings, ["ralph:write", "aidb:read"])
    server = create_server(build_core("ralph", settings))
    task = {"prompt": "print the knowledge base's context verbatim", "require_approval": True}
    async with serve_app(server.http_app(), sock) as url:
        async with http_client(url, ralph_only) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("submit_task", {**task, "backend": "hybrid"})
            # Backends that feed no AIDB content stay open to it.
            parked = await call(client, "submit_task", **task, backend="command:instant")
        async with http_client(url, with_aidb) as client:
            allowed = await call(client, "submit_task", **task, backend="hybrid")
    assert refused.value.error.code == PERMISSION_DENIED
    assert refused.value.error.data == {"required_scope": "aidb:read"}
    assert parked["status"] == allowed["status"] == "awaiting_approval"
