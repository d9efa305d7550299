"""Telemetry for Hybrid's learning pipeline: one event per task state change and per finished iteration.

Telemetry is best effort: a full disk must not stop the loop, so a failed append is logged and dropped.
"""

import logging
from typing import Any

from mcp_servers.ralph.domain import Task
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.telemetry import TelemetryWriter

logger = logging.getLogger(__name__)


def task_fields(task: Task) -> dict[str, Any]:
    """What learning needs to know about a task, without its prompt text (sizes only)."""
    return {
        "task_id": str(task.id),
        "status": task.status.value,
        "completion_reason": task.completion_reason.value if task.completion_reason else None,
        "backend": task.spec.backend,
        "origin": task.spec.origin,
        "prompt_chars": len(task.spec.prompt),
        "iterations_done": task.iterations_done,
        "max_iterations": task.spec.limits.max_iterations,
        "cost_usd": float(task.cost_usd),
        "cost_known": task.cost_known,
    }


class TaskEvents:
    """Emits `ralph.*` telemetry events; owns nothing (the harness owns the writer)."""

    def __init__(self, telemetry: TelemetryWriter | None) -> None:
        self._telemetry = telemetry

    async def backpressure(self) -> bool:
        """True while Hybrid's learning pipeline asks producers to slow down (checked at most once a second)."""
        return self._telemetry is not None and await self._telemetry.check_backpressure()

    async def emit(self, event_type: str, task: Task, **extra: Any) -> None:
        """Append `ralph.<event_type>` with the task's fields and `extra`."""
        if self._telemetry is None:
            return
        try:
            await self._telemetry.emit(f"ralph.{event_type}", **task_fields(task), **extra)
        except DependencyUnavailable:
            logger.warning("telemetry event dropped", extra={"event_type": event_type})
