"""Ralph's submit_task as an MCP task (io.modelcontextprotocol/tasks, 2026-07-28) and approve_task asking the user.

The tasks surface is driven as raw JSON-RPC over Streamable HTTP (the SDK client has no tasks extension to resolve
`resultType: "task"`), with scoped keys so that principals differ. approve_task's elicitation runs through the
SDK client's elicitation callback in both protocol eras.
"""

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, ElicitRequestParams, ElicitResult

from mcp_servers.ralph.server import create_server
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.mcp_tasks import CLIENT_CAPABILITIES_META, TASKS_EXTENSION
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED, RATE_LIMITED
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.ralph.ralph_support import call, make_workspace
from tests.support import bind_loopback, http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODERN = "2026-07-28"
TERMINAL = {"completed", "failed", "cancelled"}


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


class Wire:
    """One principal speaking stateless 2026-07-28 JSON-RPC to Ralph's /mcp, declaring the tasks extension or not."""

    def __init__(self, http: httpx.AsyncClient, url: str, *, tasks: bool = True) -> None:
        self._http = http
        self._url = f"{url}/mcp"
        self._tasks = tasks

    async def request(self, method: str, params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        capabilities: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}} if self._tasks else {}
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"},
            CLIENT_CAPABILITIES_META: capabilities,
        }
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN}
        headers["Mcp-Method"] = method
        if name is not None:
            headers["Mcp-Name"] = name
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
        response = await self._http.post(self._url, json=body, headers=headers)
        text = response.text
        payload = json.loads(text.rsplit("data: ", 1)[-1] if text.startswith(("event:", "data:")) else text)
        if "error" in payload:
            raise RpcError(payload["error"]["code"], payload["error"]["message"])
        result: dict[str, Any] = payload["result"]
        return result

    async def submit(self, **arguments: Any) -> dict[str, Any]:
        return await self.request("tools/call", {"name": "submit_task", "arguments": arguments}, "submit_task")

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self.request("tasks/get", {"taskId": task_id}, task_id)

    async def wait(self, task_id: str, states: set[str], *, timeout: float = 30) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            while (task := await self.get(task_id))["status"] not in states:
                await anyio.sleep(0.05)
        return task


async def issue(settings: StackSettings, scopes: list[str]) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("tasks-test", scopes)).token


@contextlib.asynccontextmanager
async def served(settings: StackSettings) -> AsyncIterator[str]:
    sock = bind_loopback()
    settings = settings.model_copy(
        update={"http": settings.http.model_copy(update={"ralph_port": sock.getsockname()[1]})}
    )
    async with serve_app(create_server(build_core("ralph", settings)).http_app(), sock) as url:
        yield url


@contextlib.asynccontextmanager
async def wire(url: str, token: str, *, tasks: bool = True) -> AsyncIterator[Wire]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        yield Wire(http, url, tasks=tasks)


async def test_task_augmented_submit_task_is_the_ralph_task_and_inlines_its_final_view(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings()
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, token) as client:
        created = await client.submit(prompt="x", backend="command:instant", completion_promise="OK")
        done = await client.wait(created["taskId"], TERMINAL)
        async with http_client(url, token, mode=MODERN) as sdk:
            status = await call(sdk, "task_status", task_id=created["taskId"])
    assert created["resultType"] == "task"
    assert created["status"] in {"working", "completed"} and created["ttlMs"] > 0 and "result" not in created
    assert "requestState" not in created and "task" not in created
    assert (done["resultType"], done["status"], done["result"]["isError"]) == ("complete", "completed", False)
    assert done["result"]["structuredContent"]["task_id"] == created["taskId"] == status["id"]
    assert done["result"]["structuredContent"]["completion_reason"] == status["completion_reason"] == "promise_found"


async def test_tasks_are_visible_and_cancellable_only_by_their_principal(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings(workers=0)
    owner, other = await issue(settings, ["ralph:write"]), await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, owner) as mine, wire(url, other) as theirs:
        created = await mine.submit(prompt="x", backend="command:instant", completion_promise="OK")
        task_id = created["taskId"]
        codes = []
        for attempt in (theirs.get(task_id), theirs.request("tasks/cancel", {"taskId": task_id}, task_id)):
            with pytest.raises(RpcError) as refused:
                await attempt
            codes.append(refused.value.code)
        still = await mine.get(task_id)
    assert codes == [INVALID_PARAMS, INVALID_PARAMS]
    assert still["status"] == "working"


async def test_tasks_methods_need_the_extension_and_a_plain_call_stays_synchronous(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings(workers=0)
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, token, tasks=False) as plain:
        result = await plain.submit(prompt="x", backend="command:instant", completion_promise="OK")
        with pytest.raises(RpcError) as refused:
            await plain.get(result["structuredContent"]["task_id"])
        async with http_client(url, token, mode="legacy") as legacy:
            # A 2025-11-25 session cannot carry a task result: the per-request opt-in is ignored there.
            old = await legacy.call_tool(
                "submit_task",
                {"prompt": "x", "backend": "command:instant", "completion_promise": "OK"},
                meta={CLIENT_CAPABILITIES_META: {"extensions": {TASKS_EXTENSION: {}}}},  # type: ignore[arg-type]  # a reserved key the TypedDict does not name
            )
    assert result["resultType"] == "complete" and "taskId" not in result
    assert result["structuredContent"]["status"] == "queued"
    assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert isinstance(old.structured_content, dict) and old.structured_content["status"] == "queued"


async def test_tasks_cancel_stops_a_running_task_within_two_seconds(
    ralph_settings: Callable[..., StackSettings], workspace_root: Path
) -> None:
    workspace = make_workspace(workspace_root, "sleeper")
    settings = ralph_settings(control_poll_seconds=0.5)
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, token) as client:
        created = await client.submit(prompt="sleep", backend="command:sleeper", workspace=str(workspace))
        pids = workspace / "pids.txt"
        with anyio.fail_after(20):
            while not pids.exists() or len(pids.read_text(encoding="utf-8").split()) < 2:
                await anyio.sleep(0.05)
        with anyio.fail_after(2):
            ack = await client.request("tasks/cancel", {"taskId": created["taskId"]}, created["taskId"])
            cancelled = await client.wait(created["taskId"], TERMINAL)
        again = await client.request("tasks/cancel", {"taskId": created["taskId"]}, created["taskId"])
    assert ack == again == {"resultType": "complete", "_meta": ack["_meta"]}
    assert cancelled["status"] == "cancelled" and "result" not in cancelled


async def test_approval_gate_is_input_required_and_tasks_update_answers_it(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings(workers=0)
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, token) as client:
        created = await client.submit(prompt="delete the logs", backend="command:instant", require_approval=True)
        waiting = await client.get(created["taskId"])
        answer = {"approval": {"action": "accept", "content": {"approved": False, "note": "not today"}}}
        ack = await client.request(
            "tasks/update", {"taskId": created["taskId"], "inputResponses": answer}, created["taskId"]
        )
        rejected = await client.get(created["taskId"])
    question = waiting["inputRequests"]["approval"]
    assert (created["status"], waiting["status"], question["method"]) == (
        "input_required",
        "input_required",
        "elicitation/create",
    )
    assert "delete the logs" in question["params"]["message"]
    assert set(question["params"]["requestedSchema"]["properties"]) == {"approved", "note"}
    assert ack["resultType"] == "complete" and "status" not in ack
    assert (rejected["status"], rejected["result"]["isError"]) == ("completed", True)
    assert rejected["result"]["structuredContent"]["status"] == "rejected"


async def test_unfinished_tasks_per_principal_are_capped(ralph_settings: Callable[..., StackSettings]) -> None:
    settings = ralph_settings(workers=0, mcp_tasks_per_principal=1)
    owner, other = await issue(settings, ["ralph:write"]), await issue(settings, ["ralph:write"])
    async with served(settings) as url, wire(url, owner) as mine, wire(url, other) as theirs:
        await mine.submit(prompt="one", backend="command:instant", completion_promise="OK")
        with pytest.raises(RpcError) as refused:
            await mine.submit(prompt="two", backend="command:instant", completion_promise="OK")
        elsewhere = await theirs.submit(prompt="three", backend="command:instant", completion_promise="OK")
    assert refused.value.code == RATE_LIMITED
    assert elsewhere["resultType"] == "task"


def answering(decision: dict[str, Any] | None, seen: list[str]) -> Any:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        seen.append(params.message)
        if decision is None:
            return ElicitResult(action="decline")
        return ElicitResult(action="accept", content=decision)

    return callback


@contextlib.asynccontextmanager
async def eliciting_client(url: str, token: str, mode: str, callback: Any) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode, elicitation_callback=callback) as c,
    ):
        yield c


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_approve_task_without_a_decision_asks_the_user_and_applies_the_answer(
    ralph_settings: Callable[..., StackSettings], mode: str
) -> None:
    settings = ralph_settings(workers=0)
    token = await issue(settings, ["ralph:write"])
    seen: list[str] = []
    callback = answering({"approved": True, "note": "fine"}, seen)
    async with served(settings) as url, eliciting_client(url, token, mode, callback) as client:
        submitted = await call(
            client, "submit_task", prompt="tidy the repo", backend="command:instant", require_approval=True
        )
        decided = await call(client, "approve_task", task_id=submitted["task_id"])
    assert (decided["status"], decided["approved"], decided["approval_note"]) == ("queued", True, "fine")
    assert len(seen) == 1 and "tidy the repo" in seen[0] and submitted["task_id"] in seen[0]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_approve_task_declined_by_the_user_leaves_the_task_waiting(
    ralph_settings: Callable[..., StackSettings], mode: str
) -> None:
    settings = ralph_settings(workers=0)
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, eliciting_client(url, token, mode, answering(None, [])) as client:
        submitted = await call(client, "submit_task", prompt="x", backend="command:instant", require_approval=True)
        result = await client.call_tool("approve_task", {"task_id": submitted["task_id"]})
        task = await call(client, "task_status", task_id=submitted["task_id"])
    assert result.is_error
    assert task["status"] == "awaiting_approval"


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_approve_task_without_a_decision_from_a_client_that_cannot_ask_is_invalid_params(
    ralph_settings: Callable[..., StackSettings], mode: str
) -> None:
    settings = ralph_settings(workers=0)
    token = await issue(settings, ["ralph:write"])
    async with served(settings) as url, http_client(url, token, mode=mode) as client:
        submitted = await call(client, "submit_task", prompt="x", backend="command:instant", require_approval=True)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("approve_task", {"task_id": submitted["task_id"]})
        decided = await call(client, "approve_task", task_id=submitted["task_id"], approved=False)
    assert refused.value.error.code == INVALID_PARAMS
    assert decided["status"] == "rejected"


async def test_answering_or_cancelling_a_task_needs_the_write_scope(
    ralph_settings: Callable[..., StackSettings],
) -> None:
    settings = ralph_settings(workers=0)
    reader = await issue(settings, ["ralph:read"])
    async with served(settings) as url, wire(url, reader) as client:
        codes = []
        for method, params in (("tasks/cancel", {}), ("tasks/update", {"inputResponses": {}})):
            with pytest.raises(RpcError) as refused:
                await client.request(method, {"taskId": "a", **params}, "a")
            codes.append(refused.value.code)
        with pytest.raises(RpcError) as unknown:
            await client.get("a")
    assert codes == [PERMISSION_DENIED, PERMISSION_DENIED]
    assert unknown.value.code == INVALID_PARAMS  # read reaches tasks/get, which knows no such task
