"""Task changes reach in-process watchers through PostgreSQL's NOTIFY (what stop_task waits on)."""

import uuid

import anyio
import pytest

from mcp_servers.ralph.domain import Limits, TaskId, TaskSpec, TaskStatus
from mcp_servers.ralph.notify import TaskChanges
from mcp_servers.ralph.store import TaskStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_a_watch_wakes_when_the_listener_connects_and_when_its_task_changes(
    stack_settings: StackSettings,
) -> None:
    changes = TaskChanges()
    task_id = TaskId(uuid.uuid4())
    spec = TaskSpec(prompt="p", backend="command", limits=Limits(max_iterations=1))
    async with (
        open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database,
        anyio.create_task_group() as tg,
    ):
        store = TaskStore(database)
        with changes.watch(task_id) as watch:
            tg.start_soon(changes.listen, database)
            with anyio.fail_after(5):
                # Changes committed before the listener connected were never delivered: the watch wakes to re-read.
                await watch.changed()
            await store.insert(task_id, spec, TaskStatus.QUEUED)  # its transaction NOTIFYs the task's id
            with anyio.fail_after(5):
                await watch.changed()
            stopped = await store.request_stop(task_id)  # no worker holds it: stopped at once, and NOTIFYed
            with anyio.fail_after(5):
                await watch.changed()
        tg.cancel_scope.cancel()
    assert stopped.task.status is TaskStatus.STOPPED
