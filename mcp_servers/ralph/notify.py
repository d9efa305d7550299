"""Resource-updated notifications for `ralph://tasks/{id}` and `ralph://tasks/{id}/iterations`.

Any process may change a task (workers run anywhere), so changes travel through PostgreSQL: the store sends
`NOTIFY ralph_task_changed` and every Ralph server LISTENs. Each change is published to clients in both protocol
eras: 2026-07-28 `subscriptions/listen` streams through the SDK's subscription bus, and 2025-11-25 sessions that
sent `resources/subscribe`.
"""

import logging
import weakref
from typing import Any

import anyio
import asyncpg
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mcp_servers.ralph.models import iterations_uri, task_uri
from mcp_servers.ralph.store import CHANNEL
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.postgres.pool import Database

logger = logging.getLogger(__name__)

_RECONNECT_SECONDS = 1.0
_KEEPALIVE_SECONDS = 5.0


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # `ctx.session` is a per-request proxy; its connection lives as long as the client stays connected.
    # The SDK offers no public accessor from a lowlevel handler's context (mcp 2.3; no upstream issue):
    # pinned by tests/unit/ralph/test_notify.py.
    connection: Connection = ctx.session._connection
    return connection


class ResourceFanout:
    """Delivers task changes to subscribed MCP clients of one server."""

    def __init__(self, mcp: MCPServer[Any]) -> None:
        # The SDK exposes no public handle on its bus outside a request; the attribute is the documented seam
        # (`MCPServer(subscriptions=...)`), read here instead of replacing it (mcp 2.3; no upstream issue):
        # pinned by tests/unit/ralph/test_notify.py.
        self._bus: SubscriptionBus = mcp._subscriptions
        # Per-connection (not per-request) handles, held weakly: a closed connection drops out by itself.
        self._subscribers: dict[str, weakref.WeakSet[Connection]] = {}
        # MCPServer has no public way to serve resources/subscribe (mcp 2.3; no upstream issue): its lowlevel
        # server's public add_request_handler does. Pinned by tests/unit/ralph/test_notify.py.
        lowlevel = mcp._lowlevel_server
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        self._subscribers.setdefault(str(params.uri), weakref.WeakSet()).add(_connection(ctx))
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        sessions = self._subscribers.get(str(params.uri))
        if sessions is not None:
            sessions.discard(_connection(ctx))
        return EmptyResult()

    async def publish(self, task_id: str) -> None:
        """Tell every subscriber of the task's resources that they changed."""
        for uri in (task_uri(task_id), iterations_uri(task_id)):
            await self._bus.publish(ResourceUpdated(uri=uri))
            for connection in list(self._subscribers.get(uri, ())):
                try:
                    await connection.send_resource_updated(uri)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    self._subscribers[uri].discard(connection)

    async def listen(self, database: Database) -> None:
        """Relay NOTIFY ralph_task_changed to `publish` until cancelled; reconnects after database outages."""
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            try:
                send.send_nowait(str(payload))
            except anyio.WouldBlock:  # nobody keeps up: drop, clients refetch on the next change
                logger.warning("ralph notification dropped")

        async def relay() -> None:
            async with receive:
                async for task_id in receive:
                    await self.publish(task_id)

        async with anyio.create_task_group() as tg, send:
            tg.start_soon(relay)
            while True:
                try:
                    async with database.held_connection() as conn:
                        await conn.add_listener(CHANNEL, on_notify)
                        try:
                            while True:
                                await anyio.sleep(_KEEPALIVE_SECONDS)
                                await conn.execute("SELECT 1")
                        finally:
                            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                                await conn.remove_listener(CHANNEL, on_notify)
                except (DependencyUnavailable, asyncpg.PostgresError, OSError):
                    logger.warning("ralph notification listener reconnecting")
                    await anyio.sleep(_RECONNECT_SECONDS)
