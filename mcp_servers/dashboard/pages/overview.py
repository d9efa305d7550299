"""The overview (every server's status, recent service commands), the breakers page, and their live data."""

import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._live import stream_for
from mcp_servers.dashboard.pages._page import page, render
from mcp_servers.dashboard.pages.tasks import llm_configured
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session


async def overview(request: Request, session: Session) -> Response:
    state = state_of(request)
    running = state.running()
    commands = await running.store.commands(limit=10) if state.settings.dashboard.supervised else []
    return render(
        request,
        "overview.html",
        session,
        snapshot=running.sampler.snapshot(),
        commands=commands,
        llm_configured=await llm_configured(request),
    )


async def breakers(request: Request, session: Session) -> Response:
    return render(request, "breakers.html", session, snapshot=state_of(request).running().sampler.snapshot())


async def api_status(request: Request, session: Session) -> Response:
    return JSONResponse(state_of(request).running().sampler.snapshot())


async def status_events(request: Request, session: Session) -> Response:
    """Every new status sample, as it is taken."""
    sampler = state_of(request).running().sampler

    async def read() -> dict[str, Any]:
        return sampler.snapshot()

    return stream_for(request, event="status", read=read, changes=contextlib.nullcontext(sampler.changes))


ROUTES: list[BaseRoute] = [
    Route("/", page(overview), methods=["GET"]),
    Route("/breakers", page(breakers), methods=["GET"]),
    Route("/api/status", page(api_status), methods=["GET"]),
    Route("/events/status", page(status_events), methods=["GET"]),
]
