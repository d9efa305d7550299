"""Live task streams move on Ralph's PostgreSQL notifications, not on a timer.

The fixture sets the dashboard's safety-net re-read to 600 s, so a change that reaches an open stream within the
bounds below can only have come through NOTIFY.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.dashboard.conftest import LiveStack
from tests.integration.dashboard.dashboard_support import browser_client, csrf_token, login

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

BOUND_SECONDS = 20.0


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, parsed data) of a text/event-stream response, skipping pings."""
    name, data = "", []
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = "", []


async def next_matching(events: AsyncIterator[tuple[str, Any]], event: str, wanted: Any) -> Any:
    async for name, data in events:
        if name == event and wanted(data):
            return data
    raise AssertionError("the stream ended")


async def test_a_task_change_reaches_open_streams_through_ralphs_notification(live_stack: LiveStack) -> None:
    url = live_stack.dashboard_url
    async with browser_client(url) as client:
        assert (await login(client, "admin")).status_code == 303
        headers = {"Origin": url, "X-CSRF-Token": await csrf_token(client), "Accept": "application/json"}
        submitted = await client.post("/tasks", data={"prompt": "work until stopped"}, headers=headers)
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["task_id"]

        def status_of(data: Any) -> str | None:
            return data["task"]["status"] if "task" in data else None

        def listed_status(data: Any) -> str | None:
            return next((task["status"] for task in data.get("tasks", []) if task["id"] == task_id), None)

        async with (
            client.stream("GET", f"/events/tasks/{task_id}") as detail_response,
            client.stream("GET", "/events/tasks") as list_response,
        ):
            detail, listing = sse_events(detail_response), sse_events(list_response)
            with anyio.fail_after(BOUND_SECONDS):
                await next_matching(detail, "task", lambda data: status_of(data) == "running")
                await next_matching(listing, "tasks", lambda data: listed_status(data) == "running")
            stopped = await client.post(f"/tasks/{task_id}/stop", headers=headers)
            assert stopped.status_code == 200, stopped.text
            with anyio.fail_after(BOUND_SECONDS):
                final = await next_matching(detail, "task", lambda data: status_of(data) == "stopped")
                await next_matching(listing, "tasks", lambda data: listed_status(data) == "stopped")
            assert final["task"]["completion_reason"] == "stopped_by_user"
