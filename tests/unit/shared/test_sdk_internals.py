"""The private SDK attributes the stack reads (mcp 2.3), each pinned here against a bare MCPServer.

None has a public equivalent in mcp 2.3; each use site says so and names the upstream issue, or that there is none.
When the SDK renames or reshapes one, a test here fails, without a database, before the integration tests that
depend on it do:

- `MCPServer._lowlevel_server` (then its public `add_request_handler`): `shared/subscriptions.py` serves
  `resources/subscribe`, `resources/unsubscribe` and `logging/setLevel` with it (python-sdk#2135).
- `MCPServer._subscriptions`: `shared/subscriptions.ResourceFanout` publishes to the server's own bus.
- `ServerSession._connection`: `shared/subscriptions.connection_of` keeps a legacy session to notify it later.
- `StreamableHTTPSessionManager._session_owners`: `shared/harness.StackServer` counts each principal's sessions.
"""

import warnings
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import METHOD_NOT_FOUND, EmptyResult, ResourceUpdatedNotification
from starlette.types import Receive, Scope, Send

from mcp_servers.shared.subscriptions import ResourceFanout, accept_log_level, connection_of

pytestmark = pytest.mark.anyio

URI = "pin://things/1"


def _server() -> MCPServer[Any]:
    mcp: MCPServer[Any] = MCPServer(name="sdk-internals")

    @mcp.resource("pin://things/{thing}", name="thing")
    async def thing(thing: str) -> str:
        return thing

    return mcp


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # logging/setLevel: legacy era
async def test_lowlevel_server_takes_handlers_for_methods_mcpserver_does_not_serve() -> None:
    bare = _server()
    assert isinstance(bare._lowlevel_server, Server)
    async with Client(bare, mode="legacy") as client:
        with pytest.raises(MCPError) as refused:
            await client.set_logging_level("info")
        assert refused.value.error.code == METHOD_NOT_FOUND
        assert not (client.server_capabilities.resources and client.server_capabilities.resources.subscribe)

    mcp = _server()
    accept_log_level(mcp)
    ResourceFanout(mcp)
    async with Client(mcp, mode="legacy") as client:
        assert isinstance(await client.set_logging_level("info"), EmptyResult)
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe  # advertised once a subscribe handler exists


async def test_subscriptions_is_the_bus_the_server_was_given_and_reaches_listen_streams() -> None:
    bus = InMemorySubscriptionBus()
    assert MCPServer(name="given", subscriptions=bus)._subscriptions is bus
    mcp = _server()
    assert isinstance(mcp._subscriptions, InMemorySubscriptionBus)  # the default, built by the server itself
    fanout = ResourceFanout(mcp)
    client = Client(mcp, mode="2026-07-28")
    async with client, client.listen(resource_subscriptions=[URI]) as subscription:
        await fanout.resource_updated(URI)
        with anyio.fail_after(5):
            assert await subscription.__anext__() == ResourceUpdated(uri=URI)


async def test_a_requests_session_holds_its_connection_for_the_connections_lifetime() -> None:
    mcp = _server()
    seen: list[Connection] = []

    @mcp.tool("whoami")
    async def whoami(ctx: Context) -> str:
        seen.append(connection_of(ctx.request_context))
        return "ok"

    async with Client(mcp, mode="legacy") as first:
        await first.call_tool("whoami", {})
        await first.call_tool("whoami", {})
        async with Client(mcp, mode="legacy") as second:
            await second.call_tool("whoami", {})
    assert all(isinstance(connection, Connection) for connection in seen)
    assert seen[0] is seen[1]  # one object per connection, whatever the request: the fanout holds it weakly
    assert seen[2] is not seen[0]


async def test_a_kept_connection_delivers_resource_updates_after_its_request() -> None:
    mcp = _server()
    fanout = ResourceFanout(mcp)
    received = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification) and str(message.params.uri) == URI:
            received.set()

    async with Client(mcp, mode="legacy", message_handler=on_message) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe is the legacy era's way
            await client.session.subscribe_resource(URI)
        await fanout.resource_updated(URI)  # outside any request of that session
        with anyio.fail_after(5):
            await received.wait()


async def test_session_owners_maps_each_open_streamable_session_to_its_client_id() -> None:
    mcp = _server()
    starlette = mcp.streamable_http_app(json_response=True)
    manager = mcp.session_manager
    assert manager._session_owners == {}

    async def as_key_1(scope: Scope, receive: Receive, send: Send) -> None:
        # What the bearer middleware leaves in the scope for an authenticated request.
        if scope["type"] == "http":
            scope["user"] = AuthenticatedUser(AccessToken(token="t", client_id="key-1", scopes=[]))
        await starlette(scope, receive, send)

    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "pin", "version": "1"}},
    }
    async with manager.run():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=as_key_1), base_url="http://127.0.0.1:8000"
        ) as http:
            response = await http.post(
                "/mcp", json=initialize, headers={"Accept": "application/json, text/event-stream"}
            )
        assert response.status_code == 200, response.text
        session_id = response.headers["mcp-session-id"]
        owners = manager._session_owners
        assert isinstance(owners, dict)
        assert list(owners) == [session_id]
        assert owners[session_id]["client_id"] == "key-1"  # what StackServer._session_owners yields
