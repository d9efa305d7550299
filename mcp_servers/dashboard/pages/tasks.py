"""Ralph's tasks: the list, submitting, one task with its iterations, stop and approve, and both followed live.

Every call goes to Ralph over MCP (its tools and resources); the live streams re-read when Ralph's store announces
a change on PostgreSQL (`TaskChanges`), not on a timer.
"""

import contextlib
import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mcp_servers.dashboard.pages._live import stream_for
from mcp_servers.dashboard.pages._page import done, page, parse_form, render, server
from mcp_servers.dashboard.servers import UserLink
from mcp_servers.dashboard.state import state_of
from mcp_servers.dashboard.store import Session
from mcp_servers.shared.errors import InvalidRequest, NotFound, RateLimited, StackError

LIST_LIMIT: Final = 50
_MAX_TASK_ID_CHARS: Final = 64


class SubmitTaskForm(BaseModel):
    """The task form; bounds mirror Ralph's submit_task (Ralph validates again). Empty optional fields are unset."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=100_000)
    backend: str | None = Field(default=None, min_length=1, max_length=100)  # None: Ralph's default
    max_iterations: int = Field(default=10, ge=1, le=10_000)
    completion_promise: str | None = Field(default=None, max_length=500)
    verify_command: str | None = Field(default=None, max_length=4000)
    workspace: str | None = Field(default=None, max_length=4096)
    max_seconds: float | None = Field(default=None, ge=1, le=30 * 86400)
    max_cost_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    require_approval: bool = False

    @field_validator(
        "backend", "completion_promise", "verify_command", "workspace", "max_seconds", "max_cost_usd", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class ApproveForm(BaseModel):
    """Approve or reject a parked task."""

    model_config = ConfigDict(extra="ignore")

    approved: Literal["true", "false"]
    note: str | None = Field(default=None, max_length=2000)


def _ralph(request: Request) -> UserLink:
    return server(request, "ralph")


async def _list(ralph: UserLink) -> dict[str, Any]:
    return (await ralph.call_tool("list_tasks", {"limit": LIST_LIMIT})).data()


async def _task_with_iterations(ralph: UserLink, task_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not task_id or len(task_id) > _MAX_TASK_ID_CHARS:
        raise NotFound("unknown task")
    task = (await ralph.call_tool("task_status", {"task_id": task_id})).data()
    try:
        listing = json.loads(await ralph.read_resource(f"ralph://tasks/{task_id}/iterations"))
        iterations = listing.get("iterations", []) if isinstance(listing, dict) else []
    except (StackError, ValueError):
        iterations = []
    return task, iterations


async def backends(ralph: UserLink) -> dict[str, Any] | None:
    """Ralph's ralph://backends (what a task may run on), or None when Ralph cannot say."""
    try:
        listing = json.loads(await ralph.read_resource("ralph://backends"))
    except (StackError, ValueError):
        return None
    return listing if isinstance(listing, dict) else None


async def llm_configured(request: Request) -> bool | None:
    """Whether Hybrid has an LLM to answer with (its /learning/stats); None when Hybrid cannot say."""
    try:
        answer = await state_of(request).links["hybrid"].get("/learning/stats")
    except StackError:
        return None
    if answer.status != 200 or not isinstance(answer.body, dict) or "llm_backends" not in answer.body:
        return None
    return bool(answer.body["llm_backends"])


async def tasks_page(request: Request, session: Session) -> Response:
    error = None
    listing: list[dict[str, Any]] = []
    ralph = _ralph(request)
    try:
        listing = (await _list(ralph)).get("tasks", [])
    except RateLimited:
        raise  # a 429 with Retry-After, not a page that looks served
    except StackError as exc:
        error = str(exc)
    return render(
        request,
        "tasks.html",
        session,
        tasks=listing,
        error=error,
        offered=await backends(ralph),
        llm_configured=await llm_configured(request),
    )


async def submit_task(request: Request, session: Session) -> Response:
    form = await parse_form(request, SubmitTaskForm)
    backend = form.backend
    if backend is None:
        offered = await backends(_ralph(request))
        backend = offered.get("default") if offered else None
        if not isinstance(backend, str):
            raise InvalidRequest("choose a backend: Ralph named no default (see ralph://backends)")
    arguments: dict[str, Any] = {
        "prompt": form.prompt,
        "backend": backend,
        "max_iterations": form.max_iterations,
        "require_approval": form.require_approval,
        "origin": "dashboard",
    }
    optional = {
        "completion_promise": form.completion_promise,
        "verify_command": form.verify_command,
        "workspace": form.workspace,
        "max_seconds": form.max_seconds,
        "max_cost_usd": form.max_cost_usd,
    }
    arguments |= {name: value for name, value in optional.items() if value is not None}
    result = (await _ralph(request).call_tool("submit_task", arguments)).data()
    return done(request, result, f"/tasks/{result.get('task_id', '')}")


async def task_detail(request: Request, session: Session) -> Response:
    task, iterations = await _task_with_iterations(_ralph(request), request.path_params["task_id"])
    return render(request, "task.html", session, task=task, iterations=iterations)


async def stop_task(request: Request, session: Session) -> Response:
    task_id = request.path_params["task_id"]
    result = (await _ralph(request).call_tool("stop_task", {"task_id": task_id})).data()
    return done(request, result, f"/tasks/{task_id}")


async def approve_task(request: Request, session: Session) -> Response:
    task_id = request.path_params["task_id"]
    form = await parse_form(request, ApproveForm)
    arguments: dict[str, Any] = {"task_id": task_id, "approved": form.approved == "true"}
    if form.note:
        arguments["note"] = form.note
    result = (await _ralph(request).call_tool("approve_task", arguments)).data()
    return done(request, result, f"/tasks/{task_id}")


async def task_events(request: Request, session: Session) -> Response:
    """The task list, again whenever any task changes."""
    ralph = _ralph(request)

    async def read() -> dict[str, Any]:
        return await _list(ralph)

    changes = state_of(request).tasks.any
    return stream_for(request, event="tasks", read=read, changes=contextlib.nullcontext(changes))


async def task_detail_events(request: Request, session: Session) -> Response:
    """One task and its iterations, again whenever that task changes."""
    ralph = _ralph(request)
    task_id = request.path_params["task_id"]

    async def read() -> dict[str, Any]:
        task, iterations = await _task_with_iterations(ralph, task_id)
        return {"task": task, "iterations": iterations}

    changes = state_of(request).tasks.watch(task_id)
    return stream_for(request, event="task", read=read, changes=changes)


ROUTES: list[BaseRoute] = [
    Route("/tasks", page(tasks_page), methods=["GET"]),
    Route("/tasks", page(submit_task), methods=["POST"]),
    Route("/tasks/{task_id}", page(task_detail), methods=["GET"]),
    Route("/tasks/{task_id}/stop", page(stop_task), methods=["POST"]),
    Route("/tasks/{task_id}/approve", page(approve_task), methods=["POST"]),
    Route("/events/tasks", page(task_events), methods=["GET"]),
    Route("/events/tasks/{task_id}", page(task_detail_events), methods=["GET"]),
]
