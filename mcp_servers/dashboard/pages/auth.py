"""Signing in and out: the login form (with its pre-session token and attempt limits) and logout."""

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.auth import LOGIN_COOKIE, SESSION_COOKIE, same_origin
from mcp_servers.dashboard.pages._page import page, render
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import RateLimited, retry_after_whole_seconds

logger = logging.getLogger(__name__)

_MAX_USERNAME_CHARS = 64
_MAX_PASSWORD_CHARS = 1024
_MAX_NEXT_CHARS = 500


def safe_next(request: Request, submitted: object = None) -> str:
    """A local path to return to after login (never another host: `//evil` and `/\\evil` are refused)."""
    value = submitted if isinstance(submitted, str) else request.query_params.get("next", "/")
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > _MAX_NEXT_CHARS:
        return "/"
    return value


async def login_page(request: Request) -> Response:
    auth = state_of(request).running().auth
    if await auth.session(request) is not None:
        return RedirectResponse("/", status_code=303)
    token, cookie = auth.login_token(request)
    response = render(request, "login.html", None, login_token=token, next=safe_next(request), error=None)
    if cookie is not None:
        auth.set_login_cookie(request, response, cookie)
    return response


async def login(request: Request) -> Response:
    auth = state_of(request).running().auth
    form = await request.form()
    username = str(form.get("username", ""))[:_MAX_USERNAME_CHARS]
    password = str(form.get("password", ""))[:_MAX_PASSWORD_CHARS]
    token, _ = auth.login_token(request)
    if not same_origin(request):
        return JSONResponse({"error": "csrf", "message": "cross-origin login refused"}, status_code=403)
    if not auth.check_login_token(request, str(form.get("login_token", ""))):
        token, cookie = auth.login_token(request)
        response = render(
            request,
            "login.html",
            None,
            status_code=403,
            login_token=token,
            next=safe_next(request),
            error="The login form expired; please try again.",
        )
        if cookie is not None:
            auth.set_login_cookie(request, response, cookie)
        return response
    client = request.client.host if request.client else "unknown"
    try:
        auth.admit_login_attempt(client, username)
    except RateLimited as exc:
        response = render(
            request,
            "login.html",
            None,
            status_code=429,
            login_token=token,
            next=safe_next(request),
            error=f"Too many login attempts; try again in {retry_after_whole_seconds(exc.retry_after_seconds)} s.",
        )
        response.headers["Retry-After"] = str(retry_after_whole_seconds(exc.retry_after_seconds))
        return response
    value = await auth.login(username, password)
    if value is None:
        logger.info("dashboard login refused", extra={"client": client})
        return render(
            request,
            "login.html",
            None,
            status_code=401,
            login_token=token,
            next=safe_next(request),
            error="Wrong username or password.",
        )
    logger.info("dashboard login", extra={"username": username})
    response = RedirectResponse(safe_next(request, form.get("next")), status_code=303)
    auth.set_session_cookie(request, response, value)
    response.delete_cookie(LOGIN_COOKIE, path="/login", secure=auth.secure(request), httponly=True, samesite="strict")
    return response


async def logout(request: Request, session: Session) -> Response:
    auth = state_of(request).running().auth
    await auth.logout(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=auth.secure(request), httponly=True, samesite="strict")
    return response


ROUTES: list[BaseRoute] = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", page(logout), methods=["POST"]),
]
