"""Hybrid's learning statistics (its `/learning/stats` route)."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._page import page, render, server
from mcp_servers.dashboard.store import Session


async def learning(request: Request, session: Session) -> Response:
    answer = await server(request, "hybrid").get("/learning/stats")
    stats = answer.body if answer.status == 200 and isinstance(answer.body, dict) else None
    error = None if stats is not None else f"Hybrid answered {answer.status}"
    return render(request, "learning.html", session, stats=stats, error=error)


ROUTES: list[BaseRoute] = [Route("/learning", page(learning), methods=["GET"])]
