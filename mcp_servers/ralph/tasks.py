"""What Ralph's tools do: submit, inspect, list, stop and approve tasks (plain async functions over RalphDeps)."""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import anyio

from mcp_servers.ralph.backends.command import template_name
from mcp_servers.ralph.backends.port import ReadsPeers
from mcp_servers.ralph.deps import RalphDeps
from mcp_servers.ralph.domain import Hook, Iteration, Limits, StoredTask, TaskId, TaskSpec, TaskStatus
from mcp_servers.ralph.models import BackendList, BackendView, SubmitTaskRequest
from mcp_servers.ralph.process import find_program, scrubbed_env, split_command
from mcp_servers.ralph.workspace import validate_workspace
from mcp_servers.shared.cursors import decode_cursor, encode_cursor, fingerprint, invalid_cursor
from mcp_servers.shared.errors import InvalidRequest, NotFound, PermissionDenied

logger = logging.getLogger(__name__)

# Origins whose tasks always wait for a human: automated optimisation proposals (Hybrid).
APPROVAL_ORIGINS = frozenset({"hybrid"})
# stop_task waits this long for the worker to confirm, so the caller usually sees the final state.
STOP_WAIT_SECONDS = 3.0
# list_tasks cursors carry this kind and a fingerprint of the status filter they were minted for.
_CURSOR_KIND = "tasks"
# The scope a caller needs to hand Ralph programs of its own (verify_command, hooks); no level implies it.
EXEC_SCOPE = "ralph:exec"


def parse_task_id(task_id: str) -> uuid.UUID:
    """The UUID, or NotFound (an id that cannot exist is simply unknown)."""
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise NotFound(f"no task with id {task_id!r}; task ids are UUIDs returned by submit_task") from None


def _check_may_exec(request: SubmitTaskRequest, deps: RalphDeps) -> None:
    """Caller-chosen programs need the operator's switch and the caller's ralph:exec scope."""
    what = "verify_command" if request.verify_command is not None else "hooks"
    if not deps.settings.ralph.allow_task_commands:
        raise InvalidRequest(
            f"{what} is disabled on this server: caller-supplied commands are off "
            "(the operator enables them with MCP_STACK_RALPH__ALLOW_TASK_COMMANDS=true)"
        )
    if not request.may_exec:
        raise PermissionDenied(
            f"{what} runs a program chosen by the caller, which needs the {EXEC_SCOPE!r} scope "
            "(write does not imply it); pick an operator template with backend='command:NAME' instead",
            required_scope=EXEC_SCOPE,
        )


async def _check_command(command: str, what: str, workspace: Path | None, deps: RalphDeps) -> None:
    try:
        argv = split_command(command)
    except ValueError as exc:
        raise InvalidRequest(f"{what} {command!r} cannot be parsed: {exc}") from None
    path = scrubbed_env(deps.settings.ralph.env_passthrough, {}).get("PATH")
    if await anyio.to_thread.run_sync(find_program, argv[0], workspace, path) is None:
        raise InvalidRequest(f"{what}: program {argv[0]!r} not found on PATH or in the workspace")


async def submit(deps: RalphDeps, request: SubmitTaskRequest, *, may_read: Callable[[str], bool]) -> StoredTask:
    """Validate everything a worker would otherwise trip over later, then queue (or park) the task.

    Args:
        may_read: whether the submitter holds a server's read scope itself.

    Raises:
        PermissionDenied: the backend feeds a server's content into the output and the submitter may not read it.
    """
    if not request.prompt.strip():
        raise InvalidRequest("prompt is empty; describe the task the agent should work on")
    backend = deps.backends.get(request.backend)
    for server in backend.reads_from if isinstance(backend, ReadsPeers) else ():
        if not may_read(server):
            raise PermissionDenied(
                f"backend {request.backend} puts {server} content into the task's output: submitting needs the "
                f"'{server}:read' scope (or stack-wide read) as well",
                required_scope=f"{server}:read",
            )
    if request.max_cost_usd is not None and not backend.reports_cost:
        raise InvalidRequest(
            f"backend {request.backend!r} does not report what an iteration costs, so max_cost_usd cannot be kept; "
            "omit max_cost_usd (limit max_iterations or max_seconds instead), or pick a backend that reports cost "
            "(hybrid, or a template whose output is claude_json or aider_text)"
        )
    roots = deps.settings.ralph.workspace_roots
    resolved = await validate_workspace(request.workspace, roots) if request.workspace else None
    promise = request.completion_promise
    if promise is not None and not promise.strip():
        raise InvalidRequest("completion_promise is empty; omit it or give the text the agent prints when done")
    if request.verify_command is not None or request.hooks:
        _check_may_exec(request, deps)
    if request.verify_command is not None:
        await _check_command(request.verify_command, "verify_command", resolved, deps)
    for hook in request.hooks:
        await _check_command(hook.command, f"{hook.event} hook", resolved, deps)
    if template_name(request.backend) or request.verify_command or request.hooks or request.git_checkpoint:
        await deps.sandbox.ensure_available()  # refuse now rather than fail in a worker later
    needs_approval = request.require_approval or request.origin in APPROVAL_ORIGINS
    spec = TaskSpec(
        prompt=request.prompt,
        backend=request.backend,
        limits=Limits(
            max_iterations=request.max_iterations,
            max_seconds=request.max_seconds,
            max_cost_usd=Decimal(str(request.max_cost_usd)) if request.max_cost_usd is not None else None,
        ),
        completion_promise=promise.strip() if promise else None,
        verify_command=request.verify_command,
        workspace=str(resolved) if resolved else None,
        git_checkpoint=request.git_checkpoint,
        hooks=tuple(Hook(hook.event, hook.command, hook.blocking) for hook in request.hooks),
        require_approval=needs_approval,
        origin=request.origin,
        submitted_by=request.submitted_by,
        feed_verify_output=request.verify_command is not None and request.feed_verify_output is not False,
    )
    status = TaskStatus.AWAITING_APPROVAL if needs_approval else TaskStatus.QUEUED
    task = await deps.store.insert(TaskId(uuid.uuid4()), spec, status)
    await deps.events.emit("task_submitted", task, submitted_by=request.submitted_by)
    deps.wake_workers()
    return await deps.store.get(task.id)


async def status(deps: RalphDeps, task_id: str) -> StoredTask:
    """The task, or NotFound."""
    return await deps.store.get(parse_task_id(task_id))


async def iterations(deps: RalphDeps, task_id: str) -> list[Iteration]:
    """Every iteration of the task, or NotFound."""
    return await deps.store.iterations(parse_task_id(task_id))


async def list_page(
    deps: RalphDeps, *, status_filter: TaskStatus | None, cursor: str | None, limit: int
) -> tuple[list[StoredTask], str | None]:
    """A page of tasks, newest first; the cursor resumes after the previous page's last task.

    Raises:
        InvalidRequest: the cursor is malformed or was minted for another status filter.
    """
    key = fingerprint(status_filter.value if status_filter else None)
    after: tuple[datetime, uuid.UUID] | None = None
    if cursor:
        position = decode_cursor(cursor, _CURSOR_KIND, key)
        try:
            after = (datetime.fromisoformat(str(position["c"])), uuid.UUID(str(position["i"])))
        except (KeyError, ValueError):
            raise invalid_cursor() from None
    page = await deps.store.page(status=status_filter, after=after, limit=limit + 1)
    next_cursor = None
    if len(page) > limit:
        page = page[:limit]
        last = page[-1].task
        next_cursor = encode_cursor(_CURSOR_KIND, key, {"c": last.created_at.isoformat(), "i": str(last.id)})
    return page, next_cursor


async def stop(deps: RalphDeps, task_id: str) -> StoredTask:
    """Request a stop and wait (bounded) until the worker confirms it; returns the task as it then stands.

    The wait reads the task again only when its NOTIFY arrives (the worker's final write sends one).
    """
    identifier = parse_task_id(task_id)
    before = await deps.store.get(identifier)
    with deps.changes.watch(identifier) as watch:  # before the request, so the confirmation cannot slip past
        stored = await deps.store.request_stop(identifier)
        if not before.task.status.terminal:
            await deps.events.emit("task_stop_requested", stored.task)
            if stored.task.status.terminal:  # no live worker held it: the store ended it (a worker reports its own)
                await deps.events.emit("task_finished", stored.task, detail=stored.task.detail)
        with anyio.move_on_after(STOP_WAIT_SECONDS):
            while not stored.task.status.terminal:
                await watch.changed()
                stored = await deps.store.get(identifier)
    return stored


async def approve(deps: RalphDeps, task_id: str, *, approved: bool, note: str | None, decided_by: str) -> StoredTask:
    """Release a parked task into the queue, or reject it."""
    stored = await deps.store.decide_approval(
        parse_task_id(task_id), approved=approved, note=note, decided_by=decided_by
    )
    await deps.events.emit("task_approved" if approved else "task_rejected", stored.task, decided_by=decided_by)
    deps.wake_workers()
    return stored


def backends(deps: RalphDeps) -> BackendList:
    """The backends this server offers, and what a submit form needs to know about them."""
    names = deps.backends.names()
    offered = [BackendView(name=name, reports_cost=deps.backends.get(name).reports_cost) for name in names]
    ralph = deps.settings.ralph
    return BackendList(
        backends=offered,
        default="command" if "command" in names else (names[0] if names else None),
        task_commands_allowed=ralph.allow_task_commands,
        workspace_roots=[str(root) for root in ralph.workspace_roots],
    )
