"""Ralph's task publishing through the shared fanout of a bare MCPServer: a task's resources are notified.

The SDK internals the shared fanout reaches into are pinned one by one in tests/unit/shared/test_sdk_internals.py.
"""

import warnings
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from mcp_servers.ralph.models import iterations_uri, task_uri
from mcp_servers.ralph.notify import publish_task
from mcp_servers.shared.subscriptions import ResourceFanout

pytestmark = pytest.mark.anyio

TASK = "00000000-0000-0000-0000-00000000000a"


def _server() -> tuple[MCPServer[Any], ResourceFanout]:
    mcp: MCPServer[Any] = MCPServer(name="fanout-test")

    @mcp.resource("ralph://tasks/{task_id}", name="task")
    async def task(task_id: str) -> str:
        return task_id

    return mcp, ResourceFanout(mcp)


async def test_publish_reaches_a_legacy_subscriber_through_its_connection() -> None:
    mcp, fanout = _server()
    updated: list[str] = []
    both = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            if len(updated) == 2:
                both.set()

    async with Client(mcp, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # resources/subscribe is the legacy era's way
            await client.session.subscribe_resource(task_uri(TASK))
            await client.session.subscribe_resource(iterations_uri(TASK))
        await publish_task(fanout, TASK)
        with anyio.fail_after(5):
            await both.wait()
    assert sorted(updated) == sorted([task_uri(TASK), iterations_uri(TASK)])


async def test_an_unsubscribed_uri_is_no_longer_notified() -> None:
    mcp, fanout = _server()
    updated: list[str] = []
    received = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            received.set()

    async with Client(mcp, mode="legacy", message_handler=on_message) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.session.subscribe_resource(task_uri(TASK))
            await client.session.subscribe_resource(iterations_uri(TASK))
            await client.session.unsubscribe_resource(task_uri(TASK))
        await publish_task(fanout, TASK)  # the task's URI is published first
        with anyio.fail_after(5):
            await received.wait()
        await client.list_resources()  # a round trip: anything sent before its answer has arrived
    assert updated == [iterations_uri(TASK)]


async def test_publish_reaches_a_2026_listen_stream_through_the_servers_bus() -> None:
    mcp, fanout = _server()
    client = Client(mcp, mode="2026-07-28")
    async with client, client.listen(resource_subscriptions=[task_uri(TASK)]) as subscription:
        await publish_task(fanout, TASK)
        with anyio.fail_after(5):
            event = await subscription.__anext__()
    assert event == ResourceUpdated(uri=task_uri(TASK))
