"""The dashboard's links to the servers (shared.peers): a peer's tool error or refused argument is a 400 with the
peer's text, its rate limit a 429 with its wait, and each dashboard user spends their own budget first."""

import contextlib
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from mcp_servers.dashboard.app import create_app
from mcp_servers.dashboard.security import HEADERS
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.config import RateLimitSettings, StackSettings
from mcp_servers.shared.harness import build_core
from tests.integration.dashboard.dashboard_support import browser_client, create_user, csrf_token, login
from tests.integration.test_harness import issue_key
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_stopping_an_unknown_task_relays_ralphs_tool_error_as_400(dashboard_settings: StackSettings) -> None:
    _, service_key = await issue_key(dashboard_settings, ["ralph:write", "read"])
    await create_user(dashboard_settings, "alice", "admin")
    ralph = create_ralph(build_core("ralph", dashboard_settings))
    async with serve_app(ralph.http_app()) as ralph_url:
        section = dashboard_settings.dashboard.model_copy(
            update={"ralph_url": ralph_url, "service_api_key": SecretStr(service_key)}
        )
        settings = dashboard_settings.model_copy(update={"dashboard": section})
        async with serve_app(create_app(settings)) as url, browser_client(url) as browser:
            await login(browser, "alice")
            response = await browser.post(
                "/tasks/00000000-0000-0000-0000-000000000000/stop",
                data={"csrf_token": await csrf_token(browser)},
                headers={"Origin": url, "Accept": "application/json"},
            )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "PeerToolError"
    assert body["message"].startswith("ralph stop_task: ")


@contextlib.asynccontextmanager
async def _dashboard_before_ralph(
    settings: StackSettings, *, ralph_limit: RateLimitSettings | None = None, **dashboard: object
) -> AsyncIterator[str]:
    """A real Ralph (optionally with its own rate limit) and the dashboard in front of it with a service key."""
    _, service_key = await issue_key(settings, ["ralph:write", "read"])
    ralph_settings = settings.model_copy(update={"rate_limit": ralph_limit or settings.rate_limit})
    async with serve_app(create_ralph(build_core("ralph", ralph_settings)).http_app()) as ralph_url:
        section = settings.dashboard.model_copy(
            update={"ralph_url": ralph_url, "service_api_key": SecretStr(service_key), **dashboard}
        )
        async with serve_app(create_app(settings.model_copy(update={"dashboard": section}))) as url:
            yield url


async def test_a_nul_in_a_task_prompt_is_a_400_with_ralphs_reason(dashboard_settings: StackSettings) -> None:
    """Once a 500: Ralph refuses the argument with JSON-RPC -32602, which is the submitter's to fix."""
    await create_user(dashboard_settings, "alice", "admin")
    async with _dashboard_before_ralph(dashboard_settings) as url, browser_client(url) as browser:
        await login(browser, "alice")
        headers = {"Origin": url, "Accept": "application/json", "X-CSRF-Token": await csrf_token(browser)}
        response = await browser.post("/tasks", data={"prompt": "run\x00this", "backend": "command"}, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "PeerToolError"
        assert "submit_task" in response.json()["message"] and "NUL" in response.json()["message"]
        page = await browser.post(
            "/tasks", data={"prompt": "run\x00this", "backend": "command"}, headers={**headers, "Accept": "text/html"}
        )
        assert page.status_code == 400 and "NUL" in page.text


async def test_ralphs_rate_limit_on_the_service_key_is_a_429_with_retry_after(
    dashboard_settings: StackSettings,
) -> None:
    await create_user(dashboard_settings, "alice", "admin")
    ralph_limit = RateLimitSettings(calls_per_minute=0.6, burst=2)
    async with (
        _dashboard_before_ralph(dashboard_settings, ralph_limit=ralph_limit) as url,
        browser_client(url) as browser,
    ):
        await login(browser, "alice")
        json = {"Accept": "application/json"}
        assert [(await browser.get("/tasks", headers=json)).status_code for _ in range(2)] == [200, 200]
        limited = await browser.get("/tasks", headers=json)
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"] == "RateLimited"
        assert int(limited.headers["Retry-After"]) > 60  # Ralph's own wait (one call per 100 s), not a default
        page = await browser.get("/tasks")
        assert page.status_code == 429 and int(page.headers["Retry-After"]) > 60
        for name, value in HEADERS.items():
            assert page.headers[name] == value


async def test_each_dashboard_user_has_their_own_budget_towards_the_servers(dashboard_settings: StackSettings) -> None:
    """One viewer's page loads cannot spend the service key's budget for everyone: theirs runs out first."""
    await create_user(dashboard_settings, "alice", "admin")
    await create_user(dashboard_settings, "victor", "viewer")
    async with (
        _dashboard_before_ralph(dashboard_settings, user_burst=6, user_calls_per_minute=1.0) as url,
        browser_client(url) as viewer,
        browser_client(url) as admin,
    ):
        await login(viewer, "victor")
        await login(admin, "alice")
        json = {"Accept": "application/json"}
        # A tasks page costs two calls (the list, the backends on offer): three loads spend a budget of six.
        assert [(await viewer.get("/tasks", headers=json)).status_code for _ in range(3)] == [200, 200, 200]
        limited = await viewer.get("/tasks", headers=json)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        search = await viewer.get("/search", params={"q": "anything"})
        assert search.status_code == 429
        # Another user's pages still reach Ralph.
        assert [(await admin.get("/tasks", headers=json)).status_code for _ in range(3)] == [200, 200, 200]
