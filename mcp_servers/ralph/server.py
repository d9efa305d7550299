"""Ralph: the durable autonomous agent loop as an MCP server.

Offers: `submit_task`, `task_status`, `list_tasks`, `stop_task`, `approve_task`; resources `ralph://tasks/{id}`,
`ralph://tasks/{id}/iterations` and `ralph://backends`, with resource-updated notifications in both protocol eras and
task-id completions. On 2026-07-28 a client that negotiates `io.modelcontextprotocol/tasks` gets `submit_task` as an
MCP task (tasks/get, tasks/update, tasks/cancel; see ralph/mcp_tasks.py); `approve_task` without a decision asks the
client's user. Depends on PostgreSQL (tasks and iterations; the queue workers claim from) and, for the `hybrid`
backend, on Hybrid and AIDB over MCP. Failures the model can act on (unknown id or backend, workspace outside the
roots, a task in the wrong state, a dependency down) come back as tool errors; unknown tools, missing scopes and rate
limits are JSON-RPC errors.
"""

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from pydantic import Field

from mcp_servers.ralph import tasks
from mcp_servers.ralph.approval import ApprovalDecision
from mcp_servers.ralph.completions import task_ids
from mcp_servers.ralph.deps import RalphDeps, open_ralph
from mcp_servers.ralph.domain import TaskStatus
from mcp_servers.ralph.elicit import ask_person, person_decision
from mcp_servers.ralph.mcp_tasks import RalphTaskBackend
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.ralph.models import (
    HookSpec,
    IterationList,
    IterationView,
    SubmitTaskRequest,
    SubmitTaskResult,
    TaskList,
    TaskStatusName,
    TaskSummary,
    TaskView,
)
from mcp_servers.shared.annotations import DESTRUCTIVE, READ_ONLY, WRITE
from mcp_servers.shared.auth.scopes import grants
from mcp_servers.shared.harness import Core, StackServer
from mcp_servers.shared.mcp_tasks import TasksExtension
from mcp_servers.shared.middleware.mcp import principal_of
from mcp_servers.shared.postgres.pool import Database

INSTRUCTIONS = (
    "Autonomous agent loop: submit_task runs an agent (a configured CLI command or the Hybrid LLM coordinator) on "
    "the same task again and again until its output contains <promise>TEXT</promise> or a verify command passes, "
    "or a limit ends it. Poll task_status (or read ralph://tasks/{id}); stop_task ends a task within seconds."
)

TaskIdParam = Annotated[str, Field(description="task id returned by submit_task", min_length=1, max_length=64)]


def create_server(core: Core) -> StackServer[RalphDeps]:
    """Build the Ralph server; nothing is opened until a transport starts it."""
    metrics = RalphMetrics(core.metrics.registry)

    @contextlib.asynccontextmanager
    async def open_deps(core: Core, database: Database) -> AsyncIterator[RalphDeps]:
        # Task changes go out through the server's one fanout (the harness's, which serves resources/subscribe).
        async with open_ralph(core, database, metrics=metrics, fanout=server.fanout) as deps:
            yield deps

    server = StackServer(
        core,
        instructions=INSTRUCTIONS,
        open_deps=open_deps,
        title="Ralph agent loop",
        extensions=[
            TasksExtension(
                RalphTaskBackend(core.settings.ralph),
                max_active_per_principal=core.settings.ralph.mcp_tasks_per_principal,
            )
        ],
    )

    @server.tool("submit_task", annotations=WRITE)
    async def submit_task(
        prompt: Annotated[
            str,
            Field(
                description="what the agent should achieve; sent unchanged every iteration",
                min_length=1,
                max_length=100_000,
            ),
        ],
        backend: Annotated[
            str,
            Field(
                description="'command' (the configured CLI agent), 'command:NAME' (another "
                "configured template) or 'hybrid' (Hybrid's route_query with AIDB context); read ralph://backends "
                "for what this server offers",
                min_length=1,
                max_length=100,
            ),
        ],
        ctx: Context[RalphDeps, Any],
        max_iterations: Annotated[int, Field(description="hard cap on iterations", ge=1, le=10_000, strict=True)] = 10,
        completion_promise: Annotated[
            str | None,
            Field(
                description="the task is complete when an iteration prints exactly <promise>THIS TEXT</promise>",
                max_length=500,
            ),
        ] = None,
        verify_command: Annotated[
            str | None,
            Field(
                description="command run (sandboxed) in the workspace after each iteration; exit 0 completes the "
                "task. Needs the ralph:exec scope and the operator's switch for caller-supplied commands",
                max_length=4000,
            ),
        ] = None,
        feed_verify_output: Annotated[
            bool | None,
            Field(
                description="add a failed verify command's output (its tail) to the next iteration's prompt; "
                "default: on when verify_command is given",
                strict=True,
            ),
        ] = None,
        max_seconds: Annotated[
            float | None,
            Field(description="wall-clock budget since the first iteration", ge=1, le=30 * 86400, strict=True),
        ] = None,
        max_cost_usd: Annotated[
            float | None,
            Field(
                description="cost cap in USD; refused for a backend that cannot report cost, and a task whose "
                "iteration reported no usage ends as cost_unreported (fail closed)",
                ge=0,
                le=1_000_000,
                strict=True,
            ),
        ] = None,
        workspace: Annotated[
            str | None,
            Field(
                description="absolute directory under the server's workspace roots; default: a fresh private one",
                max_length=4096,
            ),
        ] = None,
        require_approval: Annotated[
            bool, Field(description="park the task as awaiting_approval until approve_task", strict=True)
        ] = False,
        hooks: Annotated[
            list[HookSpec] | None,
            Field(description="commands run (sandboxed) around iterations; need the ralph:exec scope", max_length=20),
        ] = None,
        git_checkpoint: Annotated[
            bool, Field(description="git-commit the workspace after each iteration", strict=True)
        ] = False,
        origin: Annotated[
            str,
            Field(
                description="who proposes the task; 'hybrid' proposals always need approval",
                min_length=1,
                max_length=64,
                pattern=r"^[a-z0-9_.:-]+$",
            ),
        ] = "user",
    ) -> SubmitTaskResult:
        """Queue an agent task and return its id at once. Iterations run in the background: call task_status (or
        read ralph://tasks/{id}) to follow it, stop_task to end it, approve_task if it awaits approval. Give a
        completion_promise or a verify_command, otherwise the task can only end at a limit. verify_command and
        hooks need the ralph:exec scope and the operator's MCP_STACK_RALPH__ALLOW_TASK_COMMANDS."""
        principal = principal_of(ctx.request_context)
        request = SubmitTaskRequest(
            prompt=prompt,
            backend=backend,
            max_iterations=max_iterations,
            completion_promise=completion_promise,
            verify_command=verify_command,
            feed_verify_output=feed_verify_output,
            max_seconds=max_seconds,
            max_cost_usd=max_cost_usd,
            workspace=workspace,
            require_approval=require_approval,
            hooks=tuple(hooks or ()),
            git_checkpoint=git_checkpoint,
            origin=origin,
            submitted_by=principal.name,
            may_exec=principal.scopes is None or grants(principal.scopes, server="ralph", required="exec"),
        )
        submitted = await tasks.submit(
            ctx.request_context.lifespan_context, request, may_read=lambda peer: principal.holds(peer, "read")
        )
        return SubmitTaskResult.of(submitted.task)

    @server.tool("task_status", annotations=READ_ONLY)
    async def task_status(task_id: TaskIdParam, ctx: Context[RalphDeps, Any]) -> TaskView:
        """A task's state: status, completion_reason and detail (why it ended), iterations done, cost, timings, and
        last_verify (the latest verify command's exit status and output). Every iteration's output and verify
        result are in the resource ralph://tasks/{id}/iterations."""
        return TaskView.of(await tasks.status(ctx.request_context.lifespan_context, task_id))

    @server.tool("list_tasks", annotations=READ_ONLY)
    async def list_tasks(
        ctx: Context[RalphDeps, Any],
        status: Annotated[TaskStatusName | None, Field(description="only tasks in this state")] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page", max_length=512)] = None,
        limit: Annotated[int, Field(description="tasks per page", ge=1, le=200, strict=True)] = 50,
    ) -> TaskList:
        """Tasks newest first, a page at a time; pass next_cursor back, with the same status, to continue."""
        page, next_cursor = await tasks.list_page(
            ctx.request_context.lifespan_context,
            status_filter=TaskStatus(status) if status else None,
            cursor=cursor,
            limit=limit,
        )
        return TaskList(tasks=[TaskSummary.of(stored.task) for stored in page], next_cursor=next_cursor)

    @server.tool("stop_task", annotations=DESTRUCTIVE)
    async def stop_task(task_id: TaskIdParam, ctx: Context[RalphDeps, Any]) -> TaskView:
        """Stop a task: a queued or parked one at once; a running one within about 2 s (its command is killed).
        Returns the task as it stands afterwards (status stopped once the worker confirmed)."""
        return TaskView.of(await tasks.stop(ctx.request_context.lifespan_context, task_id))

    @server.tool("approve_task", annotations=WRITE)
    async def approve_task(
        task_id: TaskIdParam,
        ctx: Context[RalphDeps, Any],
        asked: Annotated[ElicitationResult[ApprovalDecision], Resolve(ask_person)],
        approved: Annotated[
            bool | None,
            Field(
                description="true releases the task into the queue; false rejects it. Omit it to have the client "
                "ask its user (needs the client's elicitation capability)",
                strict=True,
            ),
        ] = None,
        note: Annotated[str | None, Field(description="why, kept with the task", max_length=2000)] = None,
    ) -> TaskView:
        """Decide on a task that is awaiting_approval (submitted with require_approval, or proposed by Hybrid).
        Without `approved`, the connected client's user is shown the task and its proposed iteration and decides."""
        decision = ApprovalDecision(approved=approved, note=note) if approved is not None else person_decision(asked)
        return TaskView.of(
            await tasks.approve(
                ctx.request_context.lifespan_context,
                task_id,
                approved=decision.approved,
                note=decision.note,
                decided_by=principal_of(ctx.request_context).name,
            )
        )

    @server.resource(
        "ralph://tasks/{task_id}", name="task", description="A task and where its loop stands (JSON, as task_status)"
    )
    async def task_resource(task_id: str, ctx: Context[RalphDeps, Any]) -> str:
        return TaskView.of(await tasks.status(ctx.request_context.lifespan_context, task_id)).model_dump_json()

    @server.resource(
        "ralph://tasks/{task_id}/iterations",
        name="task_iterations",
        description="Every iteration of a task: input summary, output, exit status, duration, cost (JSON)",
    )
    async def iterations_resource(task_id: str, ctx: Context[RalphDeps, Any]) -> str:
        found = await tasks.iterations(ctx.request_context.lifespan_context, task_id)
        listing = IterationList(task_id=task_id, iterations=[IterationView.of(item) for item in found])
        return json.dumps(listing.model_dump(mode="json"))

    for template in ("ralph://tasks/{task_id}", "ralph://tasks/{task_id}/iterations"):

        @server.complete(template, "task_id")
        async def complete_task_id(prefix: str, limit: int) -> list[str]:
            return await task_ids(server.deps.store, prefix, limit)

    @server.resource(
        "ralph://backends",
        name="backends",
        description="The backends submit_task accepts here (and whether each reports cost), the default one, "
        "whether verify commands are allowed, and the workspace roots (JSON)",
    )
    async def backends_resource() -> str:
        return tasks.backends(server.deps).model_dump_json()  # a static resource gets no Context (SDK rule)

    return server
