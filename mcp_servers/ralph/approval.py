"""The question Ralph's approval gate puts to a person: the parked task and the iteration it would run next.

Used by `approve_task` (an elicitation when the caller gives no decision) and by the tasks extension (the
`inputRequests` of a task awaiting approval, answered with `tasks/update`). The text depends only on what the
task was submitted with, so it renders identically on every round of a multi-round-trip request.
"""

from pydantic import BaseModel, Field

from mcp_servers.ralph.domain import StoredTask

# The key of the approval question among a task's inputRequests.
APPROVAL_REQUEST_KEY = "approval"
# The prompt is shown up to this many characters; the rest is summarised by its length.
_PROMPT_SHOWN = 2000


class ApprovalDecision(BaseModel):
    """What the person answers (elicitation form: a yes/no and an optional note)."""

    approved: bool = Field(description="yes releases the task into the queue; no rejects it", strict=True)
    note: str | None = Field(default=None, description="why (kept with the task)", max_length=2000)


def approval_question(stored: StoredTask) -> str:
    """The task and its proposed first iteration, as the person reads them."""
    task = stored.task
    spec = task.spec
    prompt = spec.prompt
    if len(prompt) > _PROMPT_SHOWN:
        prompt = f"{prompt[:_PROMPT_SHOWN]}… ({len(spec.prompt)} characters)"
    limits = [f"at most {spec.limits.max_iterations} iterations"]
    if spec.limits.max_seconds is not None:
        limits.append(f"{spec.limits.max_seconds:g} s")
    if spec.limits.max_cost_usd is not None:
        limits.append(f"${spec.limits.max_cost_usd}")
    ends = (
        f"when the agent prints <promise>{spec.completion_promise}</promise>"
        if spec.completion_promise
        else "at a limit"
    )
    lines = [
        f"Approve Ralph task {task.id}? Proposed by {spec.origin} (submitted by {spec.submitted_by or 'unknown'}).",
        f"Iteration {task.next_iteration} would run backend {spec.backend!r} "
        f"in {spec.workspace or 'a fresh private workspace'} with this prompt:",
        prompt,
        f"Limits: {', '.join(limits)}; it ends {ends}.",
    ]
    if spec.verify_command:
        lines.append(f"Verify command after each iteration: {spec.verify_command}")
    if spec.hooks:
        lines.append("Hooks: " + "; ".join(f"{hook.event}: {hook.command}" for hook in spec.hooks))
    return "\n".join(lines)
