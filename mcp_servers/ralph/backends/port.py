"""The Backend port: run one iteration of a task and say what happened."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol, runtime_checkable

from mcp_servers.ralph.domain import Task


@dataclass(frozen=True, slots=True)
class IterationRequest:
    """Everything a backend may use for one iteration."""

    task: Task
    number: int
    workspace: Path
    previous_output: str | None
    timeout_seconds: float
    # Awaited with the process-group id when a backend starts a local process (recorded for crash clean-up).
    on_process_start: Callable[[int], Awaitable[None]] | None = None
    # What the loop tells the agent besides the task (the previous iteration's failing verify output), if anything.
    feedback: str | None = None

    @property
    def prompt(self) -> str:
        """The prompt of this iteration: the task's prompt, then the loop's feedback when there is some."""
        spec_prompt = self.task.spec.prompt
        return f"{spec_prompt}\n\n{self.feedback}" if self.feedback else spec_prompt


@dataclass(frozen=True, slots=True)
class IterationOutcome:
    """What one iteration produced. `cost_usd` None means the backend reported no usage."""

    output: str
    succeeded: bool
    timed_out: bool
    exit_status: int | None
    input_summary: str
    cost_usd: Decimal | None = None
    tokens: int | None = None
    error: str | None = None
    # The backend's own record of this iteration (Hybrid's interaction id), for outcome feedback.
    reference: str | None = None
    # Why the backend could not reach a model at all, if so; `configured_off` means it never will until an
    # operator acts (e.g. Hybrid has no LLM), so the task ends at once instead of retrying.
    unavailable: str | None = None
    configured_off: bool = False


class Backend(Protocol):
    """Runs iterations; must kill whatever it started when cancelled (stop_task relies on it)."""

    name: str
    # Whether iterations report their cost; a task with a cost cap is refused on a backend that cannot.
    reports_cost: bool

    async def run(self, request: IterationRequest) -> IterationOutcome:
        """Run one iteration; failures of the agent are outcomes, failures of Ralph's dependencies raise
        DependencyUnavailable."""
        ...


@runtime_checkable
class ReportsOutcomes(Protocol):
    """A backend that learns from results: told, after each iteration, whether it completed the task."""

    async def report_outcome(self, outcome: IterationOutcome, *, completed: bool) -> None:
        """Best effort: must not raise for an unreachable dependency."""
        ...


@runtime_checkable
class ReadsPeers(Protocol):
    """A backend that puts other servers' content into its iterations (and so into the task's output).

    `reads_from` names those servers: whoever submits a task on such a backend must hold each one's read scope
    itself, or the task would hand them what the server refuses them.
    """

    @property
    def reads_from(self) -> tuple[str, ...]: ...
