"""Change signals of the live pages: who wakes on which task change."""

import anyio
import pytest

from mcp_servers.dashboard.live import Changes, TaskChanges

pytestmark = pytest.mark.anyio


async def test_a_waiter_wakes_on_the_next_change_and_not_before() -> None:
    changes = Changes()
    seen = changes.version
    with anyio.move_on_after(0.05) as idle:
        await changes.wait(seen)
    assert idle.cancelled_caught
    async with anyio.create_task_group() as tg:
        tg.start_soon(changes.wait, seen)
        await anyio.wait_all_tasks_blocked()
        changes.notify()
    assert changes.version == seen + 1
    with anyio.fail_after(5):
        await changes.wait(seen)  # a change already made is not waited for again


def test_a_task_change_moves_any_and_that_task_only() -> None:
    tasks = TaskChanges()
    with tasks.watch("a") as a, tasks.watch("b") as b, tasks.watch("a") as a_again:
        assert a is a_again
        before = (tasks.any.version, a.version, b.version)
        tasks.publish("a")
        tasks.publish("unwatched")
        assert (tasks.any.version, a.version, b.version) == (before[0] + 2, before[1] + 1, before[2])
        tasks.publish_all()  # after a reconnect every stream re-reads
        assert (a.version, b.version) == (before[1] + 2, before[2] + 1)


def test_a_task_stays_watched_until_its_last_stream_ends() -> None:
    tasks = TaskChanges()
    with tasks.watch("a") as first:
        with tasks.watch("a") as second:
            assert second is first
        tasks.publish("a")
        assert first.version == 1
    with tasks.watch("a") as fresh:
        assert fresh is not first and fresh.version == 0
