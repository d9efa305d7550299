"""The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) over a server's own long-running work.

A server hands `TasksExtension` a `TaskBackend`: which tools may run as tasks, how to start one and how to read,
answer and cancel it. The extension does the wire part once for every server: the capability advertisement, the
negotiation gate (session or per-request `_meta` opt-in; else -32021), `CreateTaskResult` for a task-supporting
`tools/call`, `tasks/get` (DetailedTask, result inlined once terminal), `tasks/update` and `tasks/cancel` (empty
acks), the `Mcp-Name` routing header of `tasks/*`, tools that require a task (-32021 without opt-in), the
per-principal cap, and visibility (a task id another principal created is simply unknown: -32602).
Tasks are 2026-07-28 vocabulary: a legacy (2025-11-25) session gets the plain synchronous tool result.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    ClientCapabilities,
    MissingRequiredClientCapabilityErrorData,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from mcp_servers.shared.errors import NotFound, StackError
from mcp_servers.shared.middleware.mcp import RATE_LIMITED, Principal, principal_of, to_protocol_error

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
# Where a 2026-07-28 request may carry its own capabilities (SEP-2575 per-request opt-in).
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
TASK_METHODS = ("tasks/get", "tasks/update", "tasks/cancel")

TaskState = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One task as the client sees it.

    `result` is the finished tool's CallToolResult (wire shape, for `completed`), `error` a JSON-RPC error object
    (for `failed`), `input_requests` the questions the task waits on (for `input_required`).
    """

    task_id: str
    status: TaskState
    created_at: datetime
    updated_at: datetime
    status_message: str | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    input_requests: Mapping[str, Any] | None = None


class TaskBackend(Protocol):
    """A server's long-running work, as tasks. Every method gets the caller; ids of other callers are NotFound."""

    @property
    def tools(self) -> frozenset[str]:
        """Tools that run as a task when the client negotiated the extension."""
        ...

    @property
    def ttl_seconds(self) -> int:
        """How long a task stays readable after its last change."""
        ...

    @property
    def poll_interval_seconds(self) -> float:
        """The polling interval suggested to clients."""
        ...

    async def active_count(self, lifespan: Any, owner: Principal) -> int:
        """Tasks of this caller that are not terminal yet (for the per-principal cap)."""
        ...

    async def create(
        self, lifespan: Any, owner: Principal, run: CallNext, ctx: ServerRequestContext[Any, Any]
    ) -> TaskSnapshot | HandlerResult:
        """Start the tool call as a task and return it once `get` would find it (durably created).

        `run(ctx)` runs the tool itself; when it does not start anything (a tool error), return its result as is.
        """
        ...

    async def get(self, lifespan: Any, owner: Principal, task_id: str) -> TaskSnapshot:
        """The task, or NotFound (also for a task of another caller or one past its TTL)."""
        ...

    async def update(self, lifespan: Any, owner: Principal, task_id: str, responses: Mapping[str, Any]) -> None:
        """Deliver answers to the task's input requests."""
        ...

    async def cancel(self, lifespan: Any, owner: Principal, task_id: str) -> None:
        """Cancel the task; a terminal one is left as it is (idempotent)."""
        ...


class TaskIdParams(RequestParams):
    """`tasks/get` and `tasks/cancel` params."""

    task_id: str = Field(alias="taskId", min_length=1, max_length=128)


class TaskUpdateParams(TaskIdParams):
    """`tasks/update` params: answers keyed by the ids of the task's `inputRequests`."""

    input_responses: dict[str, Any] = Field(alias="inputResponses", max_length=32)


def client_declares(ctx: ServerRequestContext[Any, Any], identifier: str, params: Any = None) -> bool:
    """Whether the client declared the extension for its session or in this request's `_meta`."""
    capabilities = ctx.session.client_capabilities
    if capabilities is not None and capabilities.extensions and identifier in capabilities.extensions:
        return True
    meta = getattr(params, "meta", None) if params is not None else (ctx.params or {}).get("_meta")
    declared = meta.get(CLIENT_CAPABILITIES_META) if isinstance(meta, Mapping) else None
    extensions = declared.get("extensions") if isinstance(declared, Mapping) else None
    return isinstance(extensions, Mapping) and identifier in extensions


def missing_capability() -> MCPError:
    """-32021 naming the tasks extension, as SEP-2575 asks for a method the client did not negotiate."""
    data = MissingRequiredClientCapabilityErrorData(
        required_capabilities=ClientCapabilities(extensions={TASKS_EXTENSION: {}})
    )
    return MCPError(
        code=MISSING_REQUIRED_CLIENT_CAPABILITY,
        message=f"declare the {TASKS_EXTENSION!r} extension in the client capabilities to use tasks",
        data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def check_name_header(ctx: ServerRequestContext[Any, Any], task_id: str) -> None:
    """SEP-2663 routes `tasks/*` over HTTP by `Mcp-Name: <taskId>`: a header naming another task is refused with
    -32020 (HeaderMismatch), as the SDK refuses one naming another tool. (The SDK checks tools/call, prompts/get and
    resources/read only; an absent header is accepted.)"""
    headers = getattr(ctx.request, "headers", None)
    named = decode_header_value(headers.get(MCP_NAME_HEADER)) if headers is not None else None
    if named is not None and named.strip() != task_id:
        raise MCPError(HEADER_MISMATCH, f"the {MCP_NAME_HEADER} header does not match the request's taskId")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def task_envelope(snapshot: TaskSnapshot, *, ttl_seconds: int, poll_interval_seconds: float) -> dict[str, Any]:
    """The flat `Task` fields shared by CreateTaskResult and DetailedTask."""
    envelope: dict[str, Any] = {
        "taskId": snapshot.task_id,
        "status": snapshot.status,
        "createdAt": _iso(snapshot.created_at),
        "lastUpdatedAt": _iso(snapshot.updated_at),
        "ttlMs": ttl_seconds * 1000,
        "pollIntervalMs": max(1, round(poll_interval_seconds * 1000)),
    }
    if snapshot.status_message:
        envelope["statusMessage"] = snapshot.status_message
    return envelope


def detailed_task(snapshot: TaskSnapshot, *, ttl_seconds: int, poll_interval_seconds: float) -> dict[str, Any]:
    """`tasks/get`'s answer: the envelope plus what the state carries (result, error or input requests)."""
    body = {
        "resultType": "complete",
        **task_envelope(snapshot, ttl_seconds=ttl_seconds, poll_interval_seconds=poll_interval_seconds),
    }
    if snapshot.status == "completed" and snapshot.result is not None:
        body["result"] = dict(snapshot.result)
    elif snapshot.status == "failed" and snapshot.error is not None:
        body["error"] = dict(snapshot.error)
    elif snapshot.status == "input_required" and snapshot.input_requests:
        body["inputRequests"] = dict(snapshot.input_requests)
    return body


def _unknown_task(task_id: str) -> MCPError:
    return MCPError(INVALID_PARAMS, f"no task {task_id[:128]!r} for this caller (unknown, expired or not yours)")


class TasksExtension(Extension):
    """Serves `io.modelcontextprotocol/tasks` for one server over its `TaskBackend`."""

    identifier = TASKS_EXTENSION

    def __init__(
        self, backend: TaskBackend, *, max_active_per_principal: int, required: frozenset[str] = frozenset()
    ) -> None:
        """`required`: tools that only run as a task; a 2026-07-28 caller that did not opt in gets -32021."""
        self._backend = backend
        self._max_active = max_active_per_principal
        self._required = required

    def methods(self) -> Sequence[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskIdParams, self._get, protocol_versions=modern),
            MethodBinding("tasks/update", TaskUpdateParams, self._update, protocol_versions=modern),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel, protocol_versions=modern),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in self._backend.tools or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        if not client_declares(ctx, TASKS_EXTENSION, params):
            if params.name in self._required:
                raise missing_capability()
            return await call_next(ctx)  # a client that did not ask gets today's synchronous result
        owner = principal_of(ctx)
        lifespan = ctx.lifespan_context
        if await self._backend.active_count(lifespan, owner) >= self._max_active:
            raise MCPError(
                RATE_LIMITED,
                f"this caller already has {self._max_active} unfinished tasks on this server: wait for one to end "
                "(tasks/get) or cancel one (tasks/cancel)",
                {"retry_after_seconds": max(1, round(self._backend.poll_interval_seconds))},
            )
        created = await self._backend.create(lifespan, owner, call_next, ctx)
        if not isinstance(created, TaskSnapshot):
            return created
        return {"resultType": "task", **self._envelope(created)}

    def _envelope(self, snapshot: TaskSnapshot) -> dict[str, Any]:
        return task_envelope(
            snapshot,
            ttl_seconds=self._backend.ttl_seconds,
            poll_interval_seconds=self._backend.poll_interval_seconds,
        )

    def _gate(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> Principal:
        if not client_declares(ctx, TASKS_EXTENSION, params):
            raise missing_capability()
        check_name_header(ctx, params.task_id)
        return principal_of(ctx)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        owner = self._gate(ctx, params)
        try:
            snapshot = await self._backend.get(ctx.lifespan_context, owner, params.task_id)
        except NotFound:
            raise _unknown_task(params.task_id) from None
        except StackError as exc:
            raise to_protocol_error(exc) from None
        return detailed_task(
            snapshot,
            ttl_seconds=self._backend.ttl_seconds,
            poll_interval_seconds=self._backend.poll_interval_seconds,
        )

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> HandlerResult:
        owner = self._gate(ctx, params)
        try:
            await self._backend.update(ctx.lifespan_context, owner, params.task_id, params.input_responses)
        except NotFound:
            raise _unknown_task(params.task_id) from None
        except StackError as exc:
            raise to_protocol_error(exc) from None
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        owner = self._gate(ctx, params)
        try:
            await self._backend.cancel(ctx.lifespan_context, owner, params.task_id)
        except NotFound:
            raise _unknown_task(params.task_id) from None
        except StackError as exc:
            raise to_protocol_error(exc) from None
        return {"resultType": "complete"}
