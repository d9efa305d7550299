"""Dashboard routes: login/logout, pages, live event streams (SSE), live config and service control.

Every route except `/login`, `/health` and `/static/*` needs a session; every POST also needs the session's CSRF
token and a same-origin request; config changes and restarts need an admin. `/ready` is for machines (bearer key).
"""

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_servers import __version__
from mcp_servers.dashboard.auth import CSRF_FIELD, SAFE_METHODS, login_redirect, require_role, same_origin
from mcp_servers.dashboard.servers import SERVER_NAMES
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.auth.scopes import grants
from mcp_servers.shared.auth.verifier import StackTokenVerifier
from mcp_servers.shared.errors import InvalidRequest, NotFound, RateLimited, StackError, retry_after_whole_seconds
from mcp_servers.shared.middleware.http import error_response
from mcp_servers.shared.runtime_config import RUNTIME_KEYS, RuntimeConfigStore, apply_overrides

if TYPE_CHECKING:
    from mcp_servers.dashboard.app import DashboardState

logger = logging.getLogger(__name__)

Handler = Callable[[Request, Session], Awaitable[Response]]
TASK_POLL_SECONDS: Final = 1.0
SSE_PING_SECONDS: Final = 15
SESSION_RECHECK_SECONDS: Final = 10.0


class SubmitTaskForm(BaseModel):
    """The task form; bounds mirror Ralph's submit_task (Ralph validates again)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=100_000)
    backend: str = Field(default="command", min_length=1, max_length=100)
    max_iterations: int = Field(default=10, ge=1, le=10_000)
    completion_promise: str | None = Field(default=None, max_length=500)
    require_approval: bool = False


class ApproveForm(BaseModel):
    """Approve or reject a parked task."""

    model_config = ConfigDict(extra="ignore")

    approved: Literal["true", "false"]
    note: str | None = Field(default=None, max_length=2000)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and key != CSRF_FIELD}


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "form"
    return InvalidRequest(f"{where}: {first['msg']}")


def build_routes(state: "DashboardState") -> list[BaseRoute]:
    """Every route of the dashboard, bound to its state."""
    templates = state.templates
    settings = state.settings

    def render(
        request: Request, name: str, session: Session | None, status_code: int = 200, **context: Any
    ) -> Response:
        return templates.TemplateResponse(
            request,
            name,
            {
                "session": session,
                "csrf_token": session.csrf_token if session else "",
                "supervised": settings.dashboard.supervised,
                "page": name.removesuffix(".html"),
                **context,
            },
            status_code=status_code,
        )

    def done(request: Request, data: dict[str, Any], location: str) -> Response:
        if _wants_json(request):
            return JSONResponse(data)
        return RedirectResponse(location, status_code=303)

    def failed(request: Request, session: Session, error: StackError) -> Response:
        if _wants_json(request) or (request.method in SAFE_METHODS and request.url.path.startswith("/api/")):
            return error_response(error)
        response = error_response(error)
        return render(request, "error.html", session, status_code=response.status_code, message=str(error))

    def page(handler: Handler, *, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Session required (login redirect or 401); POSTs need CSRF + same origin; `admin` needs the admin role."""

        async def endpoint(request: Request) -> Response:
            _, _, auth, _ = state.running()
            session = await auth.session(request)
            if session is None:
                if request.method == "GET" and not _wants_json(request) and "/events/" not in request.url.path:
                    return login_redirect(request)
                return JSONResponse({"error": "unauthenticated"}, status_code=401)
            if request.method not in SAFE_METHODS and not await auth.check_state_change(request, session):
                return JSONResponse({"error": "csrf", "message": "missing or invalid CSRF token"}, status_code=403)
            try:
                if admin:
                    require_role(session, "admin")
                return await handler(request, session)
            except StackError as exc:
                return failed(request, session, exc)

        return endpoint

    # -- open routes --------------------------------------------------------------------------------------------

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "server": "dashboard", "version": __version__})

    verifier = StackTokenVerifier(lambda: KeyStore(state.database) if state.database else None, settings.auth)

    async def ready(request: Request) -> Response:
        # For machines (mcp-stack up, probes): a bearer key with read scope, like every server's /ready.
        values = request.headers.getlist("authorization")
        token = values[0][7:].strip() if len(values) == 1 and values[0].lower().startswith("bearer ") else ""
        access = await verifier.verify_token(token) if token else None
        if access is None or not grants(access.scopes, server="dashboard", required="read"):
            return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        database, _, _, _ = state.running()
        checks: dict[str, str] = {}
        try:
            with anyio.fail_after(5):
                await database.ping()
            checks["postgres"] = "ok"
        except (StackError, TimeoutError) as exc:
            checks["postgres"] = f"error: {type(exc).__name__}"
        is_ready = all(value == "ok" for value in checks.values())
        body = {
            "status": "ready" if is_ready else "not_ready",
            "server": "dashboard",
            "version": __version__,
            "uptime_seconds": round(time.time() - state.started_at, 1),
            "checks": checks,
            "breakers": state.breakers.snapshot(),
        }
        return JSONResponse(body, status_code=200 if is_ready else 503)

    async def login_page(request: Request) -> Response:
        _, _, auth, _ = state.running()
        if await auth.session(request) is not None:
            return RedirectResponse("/", status_code=303)
        token, cookie = auth.login_token(request)
        response = render(request, "login.html", None, login_token=token, next=_safe_next(request), error=None)
        if cookie is not None:
            auth.set_login_cookie(response, cookie)
        return response

    async def login(request: Request) -> Response:
        _, _, auth, _ = state.running()
        form = await request.form()
        username = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))[:1024]
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
                next=_safe_next(request),
                error="The login form expired; please try again.",
            )
            if cookie is not None:
                auth.set_login_cookie(response, cookie)
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
                next=_safe_next(request),
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
                next=_safe_next(request),
                error="Wrong username or password.",
            )
        logger.info("dashboard login", extra={"username": username})
        response = RedirectResponse(_safe_next(request, form.get("next")), status_code=303)
        auth.set_session_cookie(response, value)
        response.delete_cookie("mcpdash_login", path="/login")
        return response

    # -- pages ---------------------------------------------------------------------------------------------------

    async def logout(request: Request, session: Session) -> Response:
        _, _, auth, _ = state.running()
        await auth.logout(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie("mcpdash_session", path="/")
        return response

    async def overview(request: Request, session: Session) -> Response:
        _, store, _, sampler = state.running()
        commands = await store.commands(limit=10) if settings.dashboard.supervised else []
        return render(request, "overview.html", session, snapshot=sampler.snapshot(), commands=commands)

    async def breakers(request: Request, session: Session) -> Response:
        _, _, _, sampler = state.running()
        return render(request, "breakers.html", session, snapshot=sampler.snapshot())

    async def learning(request: Request, session: Session) -> Response:
        answer = await state.links["hybrid"].get("/learning/stats")
        stats = answer.body if answer.status == 200 and isinstance(answer.body, dict) else None
        error = None if stats is not None else f"Hybrid answered {answer.status}"
        return render(request, "learning.html", session, stats=stats, error=error)

    async def tasks_page(request: Request, session: Session) -> Response:
        error = None
        listing: list[dict[str, Any]] = []
        try:
            listing = (await state.links["ralph"].call_tool("list_tasks", {"limit": 50})).data().get("tasks", [])
        except StackError as exc:
            error = str(exc)
        return render(request, "tasks.html", session, tasks=listing, error=error)

    async def submit_task(request: Request, session: Session) -> Response:
        try:
            form = SubmitTaskForm.model_validate(await _form(request))
        except ValidationError as exc:
            raise _invalid(exc) from None
        arguments: dict[str, Any] = {
            "prompt": form.prompt,
            "backend": form.backend,
            "max_iterations": form.max_iterations,
            "require_approval": form.require_approval,
            "origin": "dashboard",
        }
        if form.completion_promise:
            arguments["completion_promise"] = form.completion_promise
        result = (await state.links["ralph"].call_tool("submit_task", arguments)).data()
        return done(request, result, f"/tasks/{result.get('task_id', '')}")

    async def task_detail(request: Request, session: Session) -> Response:
        task_id = request.path_params["task_id"]
        task, iterations = await _task_with_iterations(task_id)
        return render(request, "task.html", session, task=task, iterations=iterations)

    async def stop_task(request: Request, session: Session) -> Response:
        task_id = request.path_params["task_id"]
        result = (await state.links["ralph"].call_tool("stop_task", {"task_id": task_id})).data()
        return done(request, result, f"/tasks/{task_id}")

    async def approve_task(request: Request, session: Session) -> Response:
        task_id = request.path_params["task_id"]
        try:
            form = ApproveForm.model_validate(await _form(request))
        except ValidationError as exc:
            raise _invalid(exc) from None
        arguments: dict[str, Any] = {"task_id": task_id, "approved": form.approved == "true"}
        if form.note:
            arguments["note"] = form.note
        result = (await state.links["ralph"].call_tool("approve_task", arguments)).data()
        return done(request, result, f"/tasks/{task_id}")

    async def _task_with_iterations(task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not task_id or len(task_id) > 64:
            raise NotFound("unknown task")
        ralph = state.links["ralph"]
        task = (await ralph.call_tool("task_status", {"task_id": task_id})).data()
        try:
            listing = json.loads(await ralph.read_resource(f"ralph://tasks/{task_id}/iterations"))
            iterations = listing.get("iterations", []) if isinstance(listing, dict) else []
        except (StackError, ValueError):
            iterations = []
        return task, iterations

    async def search(request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "").strip()[:2000]
        project = request.query_params.get("project", "").strip()[:200] or None
        hits: list[dict[str, Any]] = []
        error = None
        if query:
            arguments: dict[str, Any] = {"query": query, "limit": 10}
            if project:
                arguments["project"] = project
            try:
                hits = (await state.links["aidb"].call_tool("search", arguments)).data().get("hits", [])
            except StackError as exc:
                error = str(exc)
        return render(request, "search.html", session, query=query, project=project or "", hits=hits, error=error)

    async def config_page(request: Request, session: Session, *, message: str | None = None) -> Response:
        database, _, _, _ = state.running()
        config = RuntimeConfigStore(database)
        stored = await config.load()
        effective = apply_overrides(settings, {k: v for k, v in stored.items() if k in RUNTIME_KEYS})
        rows = [
            {
                "key": key,
                "label": item.label,
                "description": item.description,
                "value": getattr(getattr(effective, item.section), item.field),
                "overridden": key in stored,
            }
            for key, item in RUNTIME_KEYS.items()
        ]
        audit = await config.audit(limit=30)
        return render(request, "config.html", session, rows=rows, audit=audit, message=message)

    async def config_view(request: Request, session: Session) -> Response:
        return await config_page(request, session)

    async def config_update(request: Request, session: Session) -> Response:
        database, _, _, _ = state.running()
        config = RuntimeConfigStore(database)
        submitted = {key: value for key, value in (await _form(request)).items() if key in RUNTIME_KEYS}
        stored = await config.load()
        current = apply_overrides(settings, {k: v for k, v in stored.items() if k in RUNTIME_KEYS})
        wanted = apply_overrides(current, submitted)  # validates every field before anything is written
        changed = []
        for key, item in RUNTIME_KEYS.items():
            new = getattr(getattr(wanted, item.section), item.field)
            if key in submitted and new != getattr(getattr(current, item.section), item.field):
                old, new = await config.set(settings, key, new, actor=session.username)
                changed.append({"key": key, "old": old, "new": new})
        logger.info("dashboard config changed", extra={"username": session.username, "keys": len(changed)})
        if _wants_json(request):
            return JSONResponse({"changed": changed})
        return await config_page(request, session, message=f"{len(changed)} setting(s) changed")

    async def restart_service(request: Request, session: Session) -> Response:
        _, store, _, _ = state.running()
        name = request.path_params["name"]
        if name not in SERVER_NAMES:
            raise NotFound(f"unknown server {name!r}")
        if not settings.dashboard.supervised:
            raise InvalidRequest("this dashboard was not started by mcp-stack up: it controls no processes")
        command_id = await store.request_command(name, "restart", actor=session.username)
        return done(request, {"command_id": command_id, "server": name}, "/")

    async def command_status(request: Request, session: Session) -> Response:
        _, store, _, _ = state.running()
        command = await store.command(int(request.path_params["command_id"]))
        return JSONResponse(
            {"id": command.id, "server": command.server, "done": command.done_at is not None, "result": command.result}
        )

    async def api_status(request: Request, session: Session) -> Response:
        _, _, _, sampler = state.running()
        return JSONResponse(sampler.snapshot())

    # -- live streams ----------------------------------------------------------------------------------------------

    async def still_signed_in(request: Request, checked: list[float]) -> bool:
        """Re-check a stream's session now and then: logout and expiry end open streams too."""
        now = time.monotonic()
        if now - checked[0] < SESSION_RECHECK_SECONDS:
            return True
        checked[0] = now
        _, _, auth, _ = state.running()
        return await auth.session(request) is not None

    async def status_events(request: Request, session: Session) -> Response:
        _, _, _, sampler = state.running()

        async def stream() -> AsyncIterator[dict[str, str]]:
            checked = [time.monotonic()]
            seen = sampler.version
            yield {"event": "status", "data": json.dumps(sampler.snapshot())}
            while await still_signed_in(request, checked):
                seen = await sampler.wait_changed(seen)
                yield {"event": "status", "data": json.dumps(sampler.snapshot())}

        return EventSourceResponse(stream(), ping=SSE_PING_SECONDS)

    async def task_events(request: Request, session: Session) -> Response:
        ralph = state.links["ralph"]

        async def stream() -> AsyncIterator[dict[str, str]]:
            checked, last = [time.monotonic()], None
            while await still_signed_in(request, checked):
                try:
                    data = json.dumps((await ralph.call_tool("list_tasks", {"limit": 50})).data())
                except StackError as exc:
                    data = json.dumps({"error": str(exc)})
                if data != last:
                    last = data
                    yield {"event": "tasks", "data": data}
                await anyio.sleep(TASK_POLL_SECONDS)

        return EventSourceResponse(stream(), ping=SSE_PING_SECONDS)

    async def task_detail_events(request: Request, session: Session) -> Response:
        task_id = request.path_params["task_id"]

        async def stream() -> AsyncIterator[dict[str, str]]:
            checked, last = [time.monotonic()], None
            while await still_signed_in(request, checked):
                try:
                    task, iterations = await _task_with_iterations(task_id)
                    data = json.dumps({"task": task, "iterations": iterations})
                except StackError as exc:
                    data = json.dumps({"error": str(exc)})
                if data != last:
                    last = data
                    yield {"event": "task", "data": data}
                await anyio.sleep(TASK_POLL_SECONDS)

        return EventSourceResponse(stream(), ping=SSE_PING_SECONDS)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        Route("/", page(overview), methods=["GET"]),
        Route("/breakers", page(breakers), methods=["GET"]),
        Route("/learning", page(learning), methods=["GET"]),
        Route("/tasks", page(tasks_page), methods=["GET"]),
        Route("/tasks", page(submit_task), methods=["POST"]),
        Route("/tasks/{task_id}", page(task_detail), methods=["GET"]),
        Route("/tasks/{task_id}/stop", page(stop_task), methods=["POST"]),
        Route("/tasks/{task_id}/approve", page(approve_task), methods=["POST"]),
        Route("/search", page(search), methods=["GET"]),
        Route("/config", page(config_view), methods=["GET"]),
        Route("/config", page(config_update, admin=True), methods=["POST"]),
        Route("/services/{name}/restart", page(restart_service, admin=True), methods=["POST"]),
        Route("/services/commands/{command_id:int}", page(command_status), methods=["GET"]),
        Route("/api/status", page(api_status), methods=["GET"]),
        Route("/events/status", page(status_events), methods=["GET"]),
        Route("/events/tasks", page(task_events), methods=["GET"]),
        Route("/events/tasks/{task_id}", page(task_detail_events), methods=["GET"]),
    ]


def _safe_next(request: Request, submitted: object = None) -> str:
    """A local path to return to after login (never another host: `//evil` and `/\\evil` are refused)."""
    value = submitted if isinstance(submitted, str) else request.query_params.get("next", "/")
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 500:
        return "/"
    return value
