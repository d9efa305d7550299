"""Change notifications to MCP clients in both protocol eras: one implementation for every server.

(Also `accept_log_level`, the other legacy-era method every server serves without sending anything.)

2026-07-28 clients hold a `subscriptions/listen` stream and receive what the SDK's subscription bus publishes
(resource updates, list changes). 2025-11-25 sessions subscribe to a resource with `resources/subscribe` and
get `notifications/resources/updated` on their session; list changes (`notifications/*/list_changed`) go to
the live legacy sessions this fanout has seen (those that subscribed to a resource, or were passed to `seen`).
"""

import logging
import weakref
from typing import Any, Literal

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionBus,
    ToolsListChanged,
)
from mcp_types import EmptyResult, SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams

logger = logging.getLogger(__name__)

_GONE = (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError)


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The client connection behind a request (it outlives the request; legacy sessions keep it open)."""
    # `ctx.session` is a per-request proxy; the SDK offers no public accessor from a lowlevel handler's context
    # (mcp 2.3). No upstream issue as of 2026-12; pinned by tests/unit/shared/test_sdk_internals.py.
    connection: Connection = ctx.session._connection
    return connection


class ResourceFanout:
    """Serves `resources/subscribe` and delivers resource updates and list changes of one server to its clients."""

    def __init__(self, mcp: MCPServer[Any]) -> None:
        # The SDK exposes no public handle on its bus outside a request; the attribute is the documented seam
        # (`MCPServer(subscriptions=...)`), read here instead of replacing it (mcp 2.3). No upstream issue as of
        # 2026-12; pinned by tests/unit/shared/test_sdk_internals.py.
        self._bus: SubscriptionBus = mcp._subscriptions
        # Per-connection (not per-request) handles, held weakly: a closed connection drops out by itself.
        self._subscribers: dict[str, weakref.WeakSet[Connection]] = {}
        self._sessions: weakref.WeakSet[Connection] = weakref.WeakSet()
        # MCPServer has no public way to serve resources/subscribe (mcp 2.3): its lowlevel server's public
        # add_request_handler does. Upstream: python-sdk#2135 (handler registration after construction); pinned by
        # tests/unit/shared/test_sdk_internals.py.
        lowlevel = mcp._lowlevel_server
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    def seen(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Remember a legacy session so that list changes reach it (call from any request of that session)."""
        self._sessions.add(connection_of(ctx))

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        connection = connection_of(ctx)
        self._subscribers.setdefault(str(params.uri), weakref.WeakSet()).add(connection)
        self._sessions.add(connection)
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        sessions = self._subscribers.get(str(params.uri))
        if sessions is not None:
            sessions.discard(connection_of(ctx))
        return EmptyResult()

    async def resource_updated(self, uri: str) -> None:
        """Tell every subscriber of `uri` (both eras) that it changed."""
        await self._bus.publish(ResourceUpdated(uri=uri))
        for connection in list(self._subscribers.get(uri, ())):
            try:
                await connection.send_resource_updated(uri)
            except _GONE:
                self._subscribers[uri].discard(connection)

    async def list_changed(self, kind: Literal["tools", "prompts", "resources"]) -> None:
        """Announce that the server's `tools`, `prompts` or `resources` list changed (both eras)."""
        event: ToolsListChanged | PromptsListChanged | ResourcesListChanged = (
            ToolsListChanged()
            if kind == "tools"
            else PromptsListChanged()
            if kind == "prompts"
            else ResourcesListChanged()
        )
        await self._bus.publish(event)
        for connection in list(self._sessions):
            send = {
                "tools": connection.send_tool_list_changed,
                "prompts": connection.send_prompt_list_changed,
                "resources": connection.send_resource_list_changed,
            }[kind]
            try:
                await send()
            except _GONE:
                self._sessions.discard(connection)


async def _accept_level(_ctx: ServerRequestContext[Any, Any], _params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


def accept_log_level(mcp: MCPServer[Any]) -> None:
    """Serve 2025-11-25 `logging/setLevel`: accepted, and trivially honoured, since our servers log to their own
    stderr and files and send no `notifications/message` (the 2026-07-28 era removed the method; the SDK answers
    it there with Method not found)."""
    # MCPServer has no public hook for it (mcp 2.3); the lowlevel server's public one does. Upstream:
    # python-sdk#2135; pinned by tests/unit/shared/test_sdk_internals.py.
    mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _accept_level)
