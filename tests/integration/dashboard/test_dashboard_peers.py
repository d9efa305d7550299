"""The dashboard's links to the servers (shared.peers): a peer's tool error is a 400 with the peer's text."""

import pytest
from pydantic import SecretStr

from mcp_servers.dashboard.app import create_app
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.config import StackSettings
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
