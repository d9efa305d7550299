"""The search box: AIDB's `search` tool."""

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._page import page, render, server
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import RateLimited, StackError

_MAX_QUERY_CHARS: Final = 2000
_MAX_PROJECT_CHARS: Final = 200
_HITS: Final = 10


async def search(request: Request, session: Session) -> Response:
    query = request.query_params.get("q", "").strip()[:_MAX_QUERY_CHARS]
    project = request.query_params.get("project", "").strip()[:_MAX_PROJECT_CHARS] or None
    hits: list[dict[str, Any]] = []
    error = None
    if query:
        arguments: dict[str, Any] = {"query": query, "limit": _HITS}
        if project:
            arguments["project"] = project
        try:
            hits = (await server(request, "aidb").call_tool("search", arguments)).data().get("hits", [])
        except RateLimited:
            raise  # a 429 with Retry-After, not a page that looks served
        except StackError as exc:
            error = str(exc)
    return render(request, "search.html", session, query=query, project=project or "", hits=hits, error=error)


ROUTES: list[BaseRoute] = [Route("/search", page(search), methods=["GET"])]
