"""Ralph tasks as MCP tasks: a task-augmented `submit_task` IS the Ralph task (same id, same durable row).

Status map: queued/running -> working; awaiting_approval -> input_required (the approval question as an
elicitation inputRequest; `tasks/update` answers it); stopped -> cancelled; every other end -> completed with the
final task as the tool result (`isError` unless the task completed). Ralph never reports `failed`: its endings are
tool outcomes, not protocol errors. `tasks/cancel` is `stop_task`. Only the principal that submitted a task sees it,
and a finished task's handle expires `mcp_task_ttl_seconds` after its last change (the Ralph task itself stays).
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.elicitation import render_elicitation_schema
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from mcp_servers.ralph import tasks
from mcp_servers.ralph.approval import APPROVAL_REQUEST_KEY, ApprovalDecision, approval_question
from mcp_servers.ralph.deps import RalphDeps
from mcp_servers.ralph.domain import StoredTask, TaskStatus
from mcp_servers.ralph.models import SubmitTaskResult, TaskView
from mcp_servers.shared.config import RalphSettings
from mcp_servers.shared.errors import InvalidRequest, NotFound
from mcp_servers.shared.mcp_tasks import TaskSnapshot, TaskState
from mcp_servers.shared.middleware.mcp import Principal

# Clients are told to poll this often; status changes also arrive as resources/updated for ralph://tasks/{id}.
POLL_INTERVAL_SECONDS = 1.0

_STATE: dict[TaskStatus, TaskState] = {
    TaskStatus.QUEUED: "working",
    TaskStatus.RUNNING: "working",
    TaskStatus.AWAITING_APPROVAL: "input_required",
    TaskStatus.STOPPED: "cancelled",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.LIMIT_REACHED: "completed",
    TaskStatus.STUCK: "completed",
    TaskStatus.FAILED: "completed",
    TaskStatus.REJECTED: "completed",
}


def tool_result(stored: StoredTask) -> dict[str, Any]:
    """The finished task as submit_task's result: TaskView fields plus SubmitTaskResult's, so the tool's
    outputSchema still validates it."""
    view = TaskView.of(stored)
    task = stored.task
    reason = f" ({task.completion_reason.value})" if task.completion_reason else ""
    structured = {
        **view.model_dump(mode="json"),
        **SubmitTaskResult.of(task).model_dump(mode="json"),
        "message": f"task ended {task.status.value}{reason}; its iterations are in {view.iterations_uri}",
    }
    result = CallToolResult(
        content=[TextContent(type="text", text=json.dumps(structured))],
        structured_content=structured,
        is_error=task.status is not TaskStatus.COMPLETED,
    )
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def snapshot_of(stored: StoredTask) -> TaskSnapshot:
    """The Ralph task as an MCP task."""
    task = stored.task
    state = _STATE[task.status]
    input_requests = None
    if state == "input_required":
        input_requests = {
            APPROVAL_REQUEST_KEY: {
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": approval_question(stored),
                    "requestedSchema": render_elicitation_schema(ApprovalDecision),
                },
            }
        }
    reason = f" ({task.completion_reason.value})" if task.completion_reason else ""
    return TaskSnapshot(
        task_id=str(task.id),
        status=state,
        created_at=task.created_at,
        updated_at=task.updated_at,
        status_message=f"{task.status.value}{reason}, {task.iterations_done} iterations done",
        result=tool_result(stored) if state == "completed" else None,
        input_requests=input_requests,
    )


class RalphTaskBackend:
    """`TaskBackend` over Ralph's task store."""

    tools = frozenset({"submit_task"})
    poll_interval_seconds = POLL_INTERVAL_SECONDS

    def __init__(self, settings: RalphSettings) -> None:
        self.ttl_seconds = settings.mcp_task_ttl_seconds

    async def active_count(self, lifespan: Any, owner: Principal) -> int:
        deps: RalphDeps = lifespan
        return await deps.store.count_unfinished(owner.name)

    async def create(
        self, lifespan: Any, owner: Principal, run: CallNext, ctx: ServerRequestContext[Any, Any]
    ) -> TaskSnapshot | HandlerResult:
        result = await run(ctx)  # submit_task itself: validation, the row, the NOTIFY
        if not isinstance(result, CallToolResult) or result.is_error or not result.structured_content:
            return result
        return snapshot_of(await self._owned(lifespan, owner, str(result.structured_content["task_id"])))

    async def get(self, lifespan: Any, owner: Principal, task_id: str) -> TaskSnapshot:
        return snapshot_of(await self._owned(lifespan, owner, task_id))

    async def update(self, lifespan: Any, owner: Principal, task_id: str, responses: Mapping[str, Any]) -> None:
        deps: RalphDeps = lifespan
        stored = await self._owned(lifespan, owner, task_id)
        answer = responses.get(APPROVAL_REQUEST_KEY)
        if stored.task.status is not TaskStatus.AWAITING_APPROVAL or not isinstance(answer, Mapping):
            return  # nothing asked, or another question's key: the task is unchanged (tasks/get shows what waits)
        action = answer.get("action")
        if action == "decline":
            decision = ApprovalDecision(approved=False, note="declined in the client")
        elif action == "accept":
            try:
                decision = ApprovalDecision.model_validate(answer.get("content") or {})
            except ValidationError:
                raise InvalidRequest("the approval answer needs content {approved: true|false, note?: text}") from None
        else:
            return  # cancel: the person did not decide; the task keeps waiting
        await tasks.approve(deps, task_id, approved=decision.approved, note=decision.note, decided_by=owner.name)

    async def cancel(self, lifespan: Any, owner: Principal, task_id: str) -> None:
        deps: RalphDeps = lifespan
        stored = await self._owned(lifespan, owner, task_id)
        if not stored.task.status.terminal:
            await tasks.stop(deps, task_id)

    async def _owned(self, lifespan: Any, owner: Principal, task_id: str) -> StoredTask:
        """The caller's own task within its TTL, or NotFound (never says whose a task is)."""
        deps: RalphDeps = lifespan
        stored = await tasks.status(deps, task_id)
        task = stored.task
        expired = task.status.terminal and task.updated_at + timedelta(seconds=self.ttl_seconds) < datetime.now(UTC)
        if task.spec.submitted_by != owner.name or expired:
            raise NotFound(f"no task {task_id}")
        return stored
