"""For machines: `/health` (open) and `/ready` (a bearer key with read scope), answered as every server answers
them (`shared.harness.readiness_report` behind `shared.middleware.http.bearer_protected`)."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers import __version__
from mcp_servers.dashboard.state import state_of
from mcp_servers.shared.harness import readiness_report
from mcp_servers.shared.middleware.http import bearer_protected


async def health(_: Request) -> Response:
    return JSONResponse({"status": "ok", "server": "dashboard", "version": __version__})


async def _report(request: Request) -> Response:
    state = state_of(request)
    database = state.running().database
    is_ready, body = await readiness_report("dashboard", {"postgres": database.ping}, state.breakers, state.started_at)
    return JSONResponse(body, status_code=200 if is_ready else 503)


async def ready(request: Request) -> Response:
    state = state_of(request)
    protected = bearer_protected(
        _report,
        verifier=state.verifier,
        base_url=str(request.base_url).rstrip("/"),
        server="dashboard",
        scope="read",
        limiter=state.limiter,
    )
    return await protected(request)


ROUTES: list[BaseRoute] = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
]
