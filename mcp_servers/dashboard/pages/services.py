"""Service control under `mcp-stack up`: an admin asks for a restart; the supervisor carries it out
(`DashboardStore`'s service-command queue, read by `mcp_servers/ops/supervisor.py`)."""

import re
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._page import done, page
from mcp_servers.dashboard.servers import SERVER_NAMES
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import InvalidRequest, NotFound

_COMMAND_ID_DIGITS: Final = 19  # a bigint has at most 19 digits
_COMMAND_ID: Final = re.compile(rf"[0-9]{{1,{_COMMAND_ID_DIGITS}}}")


async def restart_service(request: Request, session: Session) -> Response:
    state = state_of(request)
    name = request.path_params["name"]
    if name not in SERVER_NAMES:
        raise NotFound(f"unknown server {name!r}")
    if not state.settings.dashboard.supervised:
        raise InvalidRequest("this dashboard was not started by mcp-stack up: it controls no processes")
    command_id = await state.running().store.request_command(name, "restart", actor=session.username)
    return done(request, {"command_id": command_id, "server": name}, "/")


async def command_status(request: Request, session: Session) -> Response:
    raw = request.path_params["command_id"]
    # Matched here, not by an `int` path converter: one that overflows a bigint or Python's digit limit is a 404.
    if _COMMAND_ID.fullmatch(raw) is None:
        raise NotFound(f"no service command {raw[:_COMMAND_ID_DIGITS]!r}")
    command = await state_of(request).running().store.command(int(raw))
    return JSONResponse(
        {"id": command.id, "server": command.server, "done": command.done_at is not None, "result": command.result}
    )


ROUTES: list[BaseRoute] = [
    Route("/services/{name}/restart", page(restart_service, admin=True), methods=["POST"]),
    Route("/services/commands/{command_id}", page(command_status), methods=["GET"]),
]
