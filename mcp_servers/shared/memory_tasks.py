"""In-process MCP tasks: a tool call run in the background of the server's lifespan, its record kept in memory.

For a server whose long-running work is a tool call (AIDB's `ingest_path` and `reindex`, the conformance fixture
server's jobs), not a durable row of its own (Ralph's tasks live in PostgreSQL: ralph/mcp_tasks.py).

    async with MemoryTaskStore.open(ttl_seconds=3600) as tasks:   # in the lifespan: owns the task group
        yield Deps(..., tasks=tasks)

    TasksExtension(MemoryTaskBackend(tools, ttl_seconds=..., store_of=lambda deps: deps.tasks), ...)

The tool runs exactly as a synchronous call would (same handler, same validation, same error translation), in a
task of the store's task group; its progress reports (`ctx.report_progress`) become the task's `statusMessage`.
It ends `completed` with its CallToolResult (a tool error is `completed` with `isError`), `failed` with a JSON-RPC
error object when it raised a protocol error or crashed, or `cancelled` by `tasks/cancel` (the work is cancelled
at its next await; what it committed before stays). Work that needs answers from the client awaits
`current_task().ask(...)`: the task is `input_required` until `tasks/update` has answered every request.

Bounds: a terminal record is dropped `ttl_seconds` after its last change, and a principal keeps at most
`max_finished_per_principal` terminal records (the oldest go first); the number of unfinished ones is capped by
`TasksExtension`. Records live in this process only: a restart loses them (and cancels the work).
"""

import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import BaseModel

from mcp_servers.shared.errors import NotFound
from mcp_servers.shared.mcp_tasks import TERMINAL_STATES, TaskSnapshot, TaskState
from mcp_servers.shared.middleware.mcp import Principal

logger = logging.getLogger(__name__)

MAX_FINISHED_PER_PRINCIPAL = 100
_STATUS_MESSAGE_CHARS = 500


@dataclass(slots=True)
class _Record:
    task_id: str
    owner: str
    created_at: datetime
    updated_at: datetime
    status: TaskState = "working"
    status_message: str | None = None
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    pending: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    answered: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def touch(self, status: TaskState | None = None) -> None:
        if status is not None:
            self.status = status
        self.updated_at = datetime.now(UTC)

    def snapshot(self) -> TaskSnapshot:
        return TaskSnapshot(
            task_id=self.task_id,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
            status_message=self.status_message,
            result=self.result,
            error=self.error,
            input_requests=dict(self.pending) or None,
        )


class RunningTask:
    """What the work of one task sees of it (through `current_task()`)."""

    def __init__(self, record: _Record) -> None:
        self._record = record

    @property
    def task_id(self) -> str:
        return self._record.task_id

    def report(self, message: str) -> None:
        """Set the task's statusMessage (what tasks/get shows while it works)."""
        self._record.status_message = message[:_STATUS_MESSAGE_CHARS]
        self._record.touch()

    async def ask(self, requests: Mapping[str, Any]) -> dict[str, Any]:
        """Park the task `input_required` with these input requests (id -> request) until tasks/update answered
        every one; returns the answers by id. Answers to ids not asked are ignored."""
        record = self._record
        record.pending.update(requests)
        record.touch("input_required")
        while record.pending:
            record.answered = anyio.Event()
            await record.answered.wait()
        answers = {key: record.answers.pop(key) for key in requests if key in record.answers}
        record.touch("working")
        return answers


_CURRENT: contextvars.ContextVar[RunningTask | None] = contextvars.ContextVar("mcp_task", default=None)


def current_task() -> RunningTask | None:
    """The task this code runs as, or None in a plain (synchronous) tool call."""
    return _CURRENT.get()


def wire_result(result: HandlerResult) -> dict[str, Any]:
    """A handler's result as the JSON object the wire carries."""
    if isinstance(result, BaseModel):
        dumped: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    return dict(result or {})


class MemoryTaskStore:
    """Task records of one server process and the task group their work runs in; owned by the lifespan."""

    def __init__(
        self, task_group: TaskGroup, *, ttl_seconds: int, max_finished_per_principal: int = MAX_FINISHED_PER_PRINCIPAL
    ) -> None:
        self._task_group = task_group
        self._ttl = timedelta(seconds=ttl_seconds)
        self._max_finished = max_finished_per_principal
        self._records: dict[str, _Record] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, *, ttl_seconds: int, max_finished_per_principal: int = MAX_FINISHED_PER_PRINCIPAL
    ) -> AsyncIterator["MemoryTaskStore"]:
        """A store whose running work is cancelled, and awaited, when the block exits."""
        async with anyio.create_task_group() as task_group:
            try:
                yield cls(task_group, ttl_seconds=ttl_seconds, max_finished_per_principal=max_finished_per_principal)
            finally:
                task_group.cancel_scope.cancel()

    def start(self, owner: Principal, work: Callable[[], Awaitable[HandlerResult]]) -> TaskSnapshot:
        """Record a new task of `owner` and run `work()` as it; the record exists when this returns."""
        self._purge()
        now = datetime.now(UTC)
        record = _Record(task_id=uuid.uuid4().hex, owner=owner.name, created_at=now, updated_at=now)
        self._records[record.task_id] = record
        self._task_group.start_soon(self._run, record, work, name=f"mcp-task-{record.task_id}")
        return record.snapshot()

    async def _run(self, record: _Record, work: Callable[[], Awaitable[HandlerResult]]) -> None:
        _CURRENT.set(RunningTask(record))
        with record.scope:
            try:
                result = await work()
            except MCPError as exc:
                record.error = exc.error.model_dump(mode="json", by_alias=True, exclude_none=True)
                record.touch("failed")
            except Exception:  # the top of a task's work: the client reads `failed`, the log has the traceback
                logger.exception("task crashed", extra={"task_id": record.task_id})
                record.error = {"code": INTERNAL_ERROR, "message": "the task failed with an internal error"}
                record.touch("failed")
            else:
                record.result = wire_result(result)
                record.touch("completed")
        if record.scope.cancelled_caught:
            record.pending.clear()
            record.touch("cancelled")

    def active_count(self, owner: Principal) -> int:
        return sum(1 for r in self._records.values() if r.owner == owner.name and r.status not in TERMINAL_STATES)

    def get(self, owner: Principal, task_id: str) -> TaskSnapshot:
        return self._owned(owner, task_id).snapshot()

    def update(self, owner: Principal, task_id: str, responses: Mapping[str, Any]) -> None:
        """Answer pending input requests by id; other ids are ignored."""
        record = self._owned(owner, task_id)
        answered = {key: value for key, value in responses.items() if key in record.pending}
        if not answered:
            return
        for key, value in answered.items():
            del record.pending[key]
            record.answers[key] = value
        record.touch()
        if not record.pending:
            record.answered.set()

    def cancel(self, owner: Principal, task_id: str) -> None:
        """Cancel the work (it becomes `cancelled` at its next await); a terminal task is left as it is."""
        record = self._owned(owner, task_id)
        if record.status not in TERMINAL_STATES:
            record.scope.cancel()

    def _owned(self, owner: Principal, task_id: str) -> _Record:
        self._purge()
        record = self._records.get(task_id)
        if record is None or record.owner != owner.name:
            raise NotFound(f"no task {task_id}")
        return record

    def _purge(self) -> None:
        """Drop terminal records past their TTL and each principal's finished records beyond the cap."""
        expired_before = datetime.now(UTC) - self._ttl
        finished: dict[str, list[_Record]] = {}
        for record in list(self._records.values()):
            if record.status not in TERMINAL_STATES:
                continue
            if record.updated_at < expired_before:
                del self._records[record.task_id]
            else:
                finished.setdefault(record.owner, []).append(record)
        for records in finished.values():
            for record in sorted(records, key=lambda r: r.updated_at)[: max(0, len(records) - self._max_finished)]:
                del self._records[record.task_id]


class _ProgressToTask(ServerSession):
    """The request's session, except that progress reports go to the task's statusMessage: the request that
    started the task has been answered, so its stream carries nothing more."""

    def __init__(self, session: ServerSession, task: Callable[[], RunningTask | None]) -> None:
        self.__dict__.update(vars(session))
        self._task_of = task

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        task = self._task_of()
        if task is not None:
            done = f"{progress:g} of {total:g}" if total is not None else f"{progress:g}"
            task.report(message or done)


class MemoryTaskBackend:
    """`TaskBackend` running task-supporting tool calls in a `MemoryTaskStore` found in the lifespan context."""

    def __init__(
        self,
        tools: frozenset[str],
        *,
        ttl_seconds: int,
        store_of: Callable[[Any], MemoryTaskStore],
        poll_interval_seconds: float = 1.0,
    ) -> None:
        self.tools = tools
        self.ttl_seconds = ttl_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self._store_of = store_of

    async def active_count(self, lifespan: Any, owner: Principal) -> int:
        return self._store_of(lifespan).active_count(owner)

    async def create(
        self, lifespan: Any, owner: Principal, run: CallNext, ctx: ServerRequestContext[Any, Any]
    ) -> TaskSnapshot | HandlerResult:
        background = replace(ctx, session=_ProgressToTask(ctx.session, current_task))
        return self._store_of(lifespan).start(owner, lambda: run(background))

    async def get(self, lifespan: Any, owner: Principal, task_id: str) -> TaskSnapshot:
        return self._store_of(lifespan).get(owner, task_id)

    async def update(self, lifespan: Any, owner: Principal, task_id: str, responses: Mapping[str, Any]) -> None:
        self._store_of(lifespan).update(owner, task_id, responses)

    async def cancel(self, lifespan: Any, owner: Principal, task_id: str) -> None:
        self._store_of(lifespan).cancel(owner, task_id)
