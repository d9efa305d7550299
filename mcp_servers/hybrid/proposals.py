"""Optimisation proposals from rolled-up telemetry, submitted to Ralph as tasks that need human approval.

Each proposal (kind, subject) is recorded once in PostgreSQL; with no Ralph URL configured it is recorded as
`skipped`, so the dashboard still shows it.
"""

import logging
from dataclasses import dataclass

from mcp_servers.hybrid import store
from mcp_servers.shared.errors import DependencyUnavailable, PeerToolError, RateLimited
from mcp_servers.shared.peers import Peer
from mcp_servers.shared.postgres.pool import Database

logger = logging.getLogger(__name__)

MIN_CALLS = 20
ERROR_RATE = 0.5
LIMIT_RATE = 0.3
SLOW_SECONDS = 5.0
PROPOSAL_ITERATIONS = 5


@dataclass(frozen=True, slots=True)
class Proposal:
    """One suggested change."""

    kind: str
    subject: str
    description: str


async def find_proposals(database: Database) -> list[Proposal]:
    """Tools failing at least half the time or slow on average, and Ralph backends whose tasks often hit the
    iteration limit, each over at least MIN_CALLS calls or tasks."""
    return proposals_from(await store.tool_stats(database, min_calls=MIN_CALLS))


def proposals_from(stats: list[store.ToolStats]) -> list[Proposal]:
    """The proposals rolled-up tool statistics call for (pure; `find_proposals` reads the statistics)."""
    proposals: list[Proposal] = []
    for row in stats:
        subject = f"{row.server}/{row.tool}"
        if row.server == "ralph" and row.tool.startswith("task:"):
            if row.errors / row.calls >= LIMIT_RATE:
                proposals.append(
                    Proposal(
                        "ralph_iteration_limit",
                        subject,
                        f"{row.errors} of {row.calls} Ralph tasks on backend {row.tool[5:]} ended at their "
                        f"iteration limit (mean {row.mean_seconds:.1f} iterations). Review a sample and propose "
                        "whether raising max_iterations or changing the prompts would let them complete; do not "
                        "change anything without approval.",
                    )
                )
            continue
        if row.errors / row.calls >= ERROR_RATE:
            proposals.append(
                Proposal(
                    "tool_error_rate",
                    subject,
                    f"The tool {subject} failed {row.errors} of {row.calls} calls. Find the cause in its "
                    "recent calls and propose a fix (limits, timeouts or input validation); do not change "
                    "anything without approval.",
                )
            )
        elif row.mean_seconds >= SLOW_SECONDS:
            proposals.append(
                Proposal(
                    "tool_latency",
                    subject,
                    f"The tool {subject} takes {row.mean_seconds:.1f} s on average over {row.calls} calls. "
                    "Propose how to make it faster or raise its timeout; do not change anything without approval.",
                )
            )
    return proposals


async def submit_proposals(database: Database, ralph: Peer | None, proposals: list[Proposal]) -> int:
    """Record new proposals and submit them to Ralph with require_approval=true; returns how many were new."""
    new = 0
    for proposal in proposals:
        inserted = await store.insert_proposal(
            database, kind=proposal.kind, subject=proposal.subject, description=proposal.description
        )
        if inserted is None:
            continue
        new += 1
        status, task_id = "skipped", None
        if ralph is not None:
            try:
                answer = await ralph.call_tool(
                    "submit_task",
                    {
                        "prompt": proposal.description,
                        "backend": "hybrid",
                        "max_iterations": PROPOSAL_ITERATIONS,
                        "require_approval": True,
                    },
                )
                result = answer.data()
                task_id = str(result.get("task_id") or result.get("id") or "") or None
                status = "submitted"
            except (DependencyUnavailable, RateLimited, PeerToolError) as exc:
                logger.info("proposal not submitted to ralph", extra={"error_type": type(exc).__name__})
                status = "failed"
        await store.set_proposal_status(database, inserted, status, task_id)
    return new
