"""What every page handler shares: the session gate (login, CSRF, same origin, admin role), rendering, answers
for browsers and for JSON clients, and form parsing."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from mcp_servers.dashboard.auth import CSRF_FIELD, SAFE_METHODS, login_redirect, require_role
from mcp_servers.dashboard.servers import UserLink
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import InvalidRequest, StackError
from mcp_servers.shared.middleware.http import error_response

Handler = Callable[[Request, Session], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


def wants_json(request: Request) -> bool:
    """The client asked for JSON (scripts, tests) rather than a page."""
    return "application/json" in request.headers.get("accept", "")


def render(request: Request, name: str, session: Session | None, status_code: int = 200, **context: Any) -> Response:
    """A template with what the layout needs: session, CSRF token, supervision, the current page."""
    state = state_of(request)
    return state.templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "supervised": state.settings.dashboard.supervised,
            "page": name.removesuffix(".html"),
            **context,
        },
        status_code=status_code,
    )


def done(request: Request, data: dict[str, Any], location: str) -> Response:
    """The answer to a successful POST: its data for JSON clients, a redirect for browsers."""
    if wants_json(request):
        return JSONResponse(data)
    return RedirectResponse(location, status_code=303)


def server(request: Request, name: str) -> UserLink:
    """The server `name` on behalf of the signed-in user, spending their budget (only within a `page` handler)."""
    session: Session = request.state.session
    return state_of(request).link(name, session.username)


def _failed(request: Request, session: Session, error: StackError) -> Response:
    response = error_response(error)
    if wants_json(request) or (request.method in SAFE_METHODS and request.url.path.startswith("/api/")):
        return response
    page = render(request, "error.html", session, status_code=response.status_code, message=str(error))
    if "retry-after" in response.headers:
        page.headers["Retry-After"] = response.headers["retry-after"]
    return page


def page(handler: Handler, *, admin: bool = False) -> Endpoint:
    """Session required (login redirect or 401); POSTs need CSRF + same origin; `admin` needs the admin role.

    A StackError from the handler becomes the error page (or its JSON for JSON clients).
    """

    async def endpoint(request: Request) -> Response:
        auth = state_of(request).running().auth
        session = await auth.session(request)
        if session is None:
            if request.method == "GET" and not wants_json(request) and "/events/" not in request.url.path:
                return login_redirect(request)
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        if request.method not in SAFE_METHODS and not await auth.check_state_change(request, session):
            return JSONResponse({"error": "csrf", "message": "missing or invalid CSRF token"}, status_code=403)
        request.state.session = session  # names the user whose budget `server` spends
        try:
            if admin:
                require_role(session, "admin")
            return await handler(request, session)
        except StackError as exc:
            return _failed(request, session, exc)

    return endpoint


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted text fields, without the CSRF token."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and key != CSRF_FIELD}


async def parse_form(request: Request, model: type[M]) -> M:
    """The form validated by `model`; raises InvalidRequest naming the first bad field."""
    try:
        return model.model_validate(await form_fields(request))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "form"
        raise InvalidRequest(f"{where}: {first['msg']}") from None
