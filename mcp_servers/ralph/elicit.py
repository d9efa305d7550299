"""approve_task without a decision: ask the connected client's user (MCP elicitation, both protocol eras).

On 2026-07-28 the SDK sends the question inside an `input_required` result and resumes when the client answers;
on 2025-11-25 it sends `elicitation/create` during the call. A client that declared no elicitation capability is
never asked: for it `approved` stays required, as before (JSON-RPC -32602).
"""

from typing import Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from mcp_servers.ralph import tasks
from mcp_servers.ralph.approval import ApprovalDecision, approval_question
from mcp_servers.ralph.deps import RalphDeps
from mcp_servers.ralph.domain import TaskStatus
from mcp_servers.shared.errors import InvalidRequest, NotFound


async def ask_person(
    task_id: str, approved: bool | None, ctx: Context[RalphDeps, Any]
) -> Elicit[ApprovalDecision] | None:
    """The approval question, when there is a person to ask and something for them to decide; else None."""
    capabilities = ctx.request_context.session.client_capabilities
    if approved is not None or capabilities is None or capabilities.elicitation is None:
        return None
    try:
        stored = await tasks.status(ctx.request_context.lifespan_context, task_id)
    except NotFound:
        return None  # the tool body reports the unknown id
    if stored.task.status is not TaskStatus.AWAITING_APPROVAL:
        return None
    return Elicit(approval_question(stored), ApprovalDecision)


def person_decision(asked: ElicitationResult[ApprovalDecision]) -> ApprovalDecision:
    """What the person decided.

    Raises:
        MCPError: INVALID_PARAMS when nobody could be asked (no elicitation capability, or nothing awaits approval).
        InvalidRequest: the person declined or cancelled; the task still awaits approval.
    """
    if isinstance(asked, AcceptedElicitation):
        if isinstance(asked.data, ApprovalDecision):
            return asked.data
        raise MCPError(
            INVALID_PARAMS,
            "approve_task needs approved (true or false): this client cannot ask its user (no elicitation "
            "capability), or the task is not awaiting approval (task_status shows its state)",
        )
    raise InvalidRequest(
        f"the user {'declined' if asked.action == 'decline' else 'cancelled'} the approval question; the task "
        "still awaits approval (call approve_task again, or stop_task)"
    )
