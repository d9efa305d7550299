"""How a page opens a live stream: the shared SSE helper, bound to the request's session and settings."""

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request

from mcp_servers.dashboard.live import Changes, live_stream
from mcp_servers.dashboard.state import state_of


def stream_for(
    request: Request,
    *,
    event: str,
    read: Callable[[], Awaitable[Any]],
    changes: contextlib.AbstractContextManager[Changes],
) -> EventSourceResponse:
    """`live_stream` for this request: ends when its session does; re-reads on `changes` (and the safety net)."""
    state = state_of(request)

    async def signed_in() -> bool:
        return await state.running().auth.session(request) is not None

    return live_stream(
        event=event,
        read=read,
        changes=changes,
        signed_in=signed_in,
        fallback_seconds=state.settings.dashboard.stream_fallback_seconds,
    )
