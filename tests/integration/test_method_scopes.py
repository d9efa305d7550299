"""Every MCP request method is scope-checked over HTTP in both eras and over SSE, on the real AIDB server.

A key scoped to another server (`ralph:read`) gets PERMISSION_DENIED on every AIDB method that reads something
(resources, prompts, completions, subscriptions, the tool list); an `aidb:read` key is let through each of them
(to a result, or to METHOD_NOT_FOUND where AIDB serves no such method). A method the server dispatches but no
scope rule names is refused to every key, even an admin one, while stdio/in-process callers stay trusted.
"""

import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, EmptyResult, PromptReference, Request, RequestParams

from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from tests.integration.test_harness import build_echo_server, issue_key
from tests.support import http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TRANSPORTS = ["legacy", "2026-07-28", "sse"]

Call = Callable[[Client], Awaitable[object]]


async def send(client: Client, method: str, params: dict[str, Any] | None = None) -> object:
    """A request sent as is (the Client warns on methods its era dropped, or has no helper for them)."""
    return await client.session.send_request(Request(method=method, params=params), EmptyResult)


# The SDK's answers to a method AIDB does not serve: "method not found", or invalid params for a capability the
# server does not advertise.
NOT_SERVED = frozenset({METHOD_NOT_FOUND, INVALID_PARAMS})


async def subscribe(client: Client, uri: str) -> object:
    """resources/subscribe, which the Client deprecates (and warns about) even when the era still has it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return await client.subscribe_resource(uri)


LEGACY_ONLY = frozenset({"legacy", "sse"})
# One call per request method a read key may make, and whether AIDB serves it to an allowed key (on which
# transports).
READ_METHODS: dict[str, tuple[Call, bool | frozenset[str]]] = {
    "tools/list": (lambda c: c.list_tools(), True),
    "resources/list": (lambda c: c.list_resources(), True),
    "resources/templates/list": (lambda c: c.list_resource_templates(), True),
    "resources/read": (lambda c: c.read_resource("aidb://projects"), True),
    "prompts/list": (lambda c: c.list_prompts(), True),
    "prompts/get": (lambda c: c.get_prompt("answer_with_sources", {"question": "what is a wheel?"}), True),
    "completion/complete": (
        lambda c: c.complete(PromptReference(name="answer_with_sources"), {"name": "question", "value": "wh"}),
        True,
    ),
    # A 2025-11-25 method: the 2026-07-28 era subscribes with subscriptions/listen, and the SDK refuses it there.
    "resources/subscribe": (lambda c: subscribe(c, "aidb://projects"), LEGACY_ONLY),
}


@contextlib.asynccontextmanager
async def connect(url: str, token: str, transport: str) -> AsyncIterator[Client]:
    if transport == "sse":
        headers = {"Authorization": f"Bearer {token}"}
        async with Client(sse_client(f"{url}/sse", headers=headers), mode="legacy") as client:
            yield client
    else:
        async with http_client(url, token, mode=transport) as client:
            yield client


async def outcome(call: Call, client: Client) -> int | None:
    """None when the call succeeded, else its JSON-RPC error code."""
    try:
        with anyio.fail_after(60):
            await call(client)
    except MCPError as exc:
        return exc.error.code
    return None


@pytest.fixture
def aidb_settings(stack_settings: StackSettings) -> StackSettings:
    return stack_settings.model_copy(update={"vectors": stack_settings.vectors.model_copy(update={"backend": "edge"})})


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_for_another_server_is_refused_every_read_method_and_a_read_key_is_not(
    aidb_settings: StackSettings, transport: str
) -> None:
    _, foreign = await issue_key(aidb_settings, ["ralph:read"])
    _, reader = await issue_key(aidb_settings, ["aidb:read"])
    server = create_server(build_core("aidb", aidb_settings))
    async with serve_app(server.http_app()) as url:
        async with connect(url, foreign, transport) as client:
            refused = {method: await outcome(call, client) for method, (call, _) in READ_METHODS.items()}
        async with connect(url, reader, transport) as client:
            allowed = {method: await outcome(call, client) for method, (call, _) in READ_METHODS.items()}
    assert refused == dict.fromkeys(READ_METHODS, PERMISSION_DENIED)
    for method, (_, served) in READ_METHODS.items():
        serves = served if isinstance(served, bool) else transport in served
        assert (allowed[method] is None) if serves else (allowed[method] in NOT_SERVED), (method, allowed[method])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_for_another_server_cannot_even_probe_tool_names(
    stack_settings: StackSettings, transport: str
) -> None:
    _, foreign = await issue_key(stack_settings, ["ralph:admin"])
    async with (
        serve_app(build_echo_server(stack_settings).http_app()) as url,
        connect(url, foreign, transport) as client,
    ):
        known = await outcome(lambda c: c.call_tool("echo", {"text": "x"}), client)
        unknown = await outcome(lambda c: c.call_tool("no_such_tool", {}), client)
    assert known == unknown == PERMISSION_DENIED


async def custom_method(client: Client) -> object:
    return await send(client, "x/custom")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_method_without_a_scope_rule_is_refused_even_to_an_admin_key(
    stack_settings: StackSettings, transport: str
) -> None:
    _, admin = await issue_key(stack_settings, ["admin"])
    server = build_echo_server(stack_settings)
    reached: list[str] = []

    async def handler(ctx: Any, params: Any) -> EmptyResult:
        reached.append("x/custom")
        return EmptyResult()

    # A handler registered behind the harness's back, as a later SDK or server might add one.
    server.mcp._lowlevel_server.add_request_handler("x/custom", RequestParams, handler)
    async with serve_app(server.http_app()) as url, connect(url, admin, transport) as client:
        assert await outcome(custom_method, client) == PERMISSION_DENIED
        assert await outcome(lambda c: c.list_tools(), client) is None
    assert reached == []
    async with Client(server.mcp) as trusted:
        assert await outcome(custom_method, trusted) is None
    assert reached == ["x/custom"]


async def test_scope_refusals_are_counted_as_auth_failures(stack_settings: StackSettings) -> None:
    _, foreign = await issue_key(stack_settings, ["ralph:read"])
    _, reader = await issue_key(stack_settings, ["read"])
    async with serve_app(build_echo_server(stack_settings).http_app()) as url:
        async with http_client(url, foreign) as client:
            assert await outcome(lambda c: c.list_prompts(), client) == PERMISSION_DENIED
            assert await outcome(lambda c: c.call_tool("echo", {"text": "x"}), client) == PERMISSION_DENIED
        async with httpx.AsyncClient() as raw:
            metrics = (await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {reader}"})).text
    assert 'mcpstack_auth_failures_total{reason="insufficient_scope",server="aidb"} 2.0' in metrics
