"""PostgreSQL LISTEN/NOTIFY: the channels the stack's processes share, and one listener loop for all of them.

A notification reaches only the connections that LISTEN when it is sent: after a reconnect, a listener must
assume it missed some (`listen` calls `on_listening` each time it starts to hear again).
"""

import logging
from collections.abc import Callable
from typing import Final

import anyio
import asyncpg

from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.postgres.pool import Database

__all__ = ["TASK_CHANGED_CHANNEL", "listen"]

logger = logging.getLogger(__name__)

TASK_CHANGED_CHANNEL: Final = "ralph_task_changed"
"""Ralph's store sends a task's id here with every change a client can see; Ralph's servers (resource updates)
and the dashboard (live task pages) listen."""

_KEEPALIVE_SECONDS: Final = 5.0
_RECONNECT_SECONDS: Final = 1.0
_REMOVE_TIMEOUT_SECONDS: Final = 2.0


async def listen(
    database: Database,
    channel: str,
    on_payload: Callable[[str], None],
    *,
    on_listening: Callable[[], None] | None = None,
    keepalive_seconds: float = _KEEPALIVE_SECONDS,
    reconnect_seconds: float = _RECONNECT_SECONDS,
) -> None:
    """LISTEN on `channel` until cancelled, on one held connection; reconnects after database outages.

    Args:
        on_payload: called on the event loop with each notification's payload; must not block or raise.
        on_listening: called each time the listener (re)starts hearing, so the caller can refresh what it may
            have missed while it was not listening.
        keepalive_seconds: how often the held connection is probed, so a dead one is noticed and replaced.
    """

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        on_payload(str(payload))

    while True:
        try:
            async with database.held_connection() as conn:
                await conn.add_listener(channel, on_notify)
                try:
                    if on_listening is not None:
                        on_listening()
                    while True:
                        await anyio.sleep(keepalive_seconds)
                        await conn.execute("SELECT 1")
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(_REMOVE_TIMEOUT_SECONDS):
                        await conn.remove_listener(channel, on_notify)
        except (DependencyUnavailable, asyncpg.PostgresError, OSError):
            logger.warning("notification listener reconnecting", extra={"channel": channel})
            await anyio.sleep(reconnect_seconds)
