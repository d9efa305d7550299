"""The AIDB search box and the continuous-learning page in a real browser, against live AIDB and Hybrid servers."""

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.dashboard.app import create_app
from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.harness import build_core
from tests.e2e.dashboard.conftest import ARTIFACTS, log_in
from tests.integration.dashboard.dashboard_support import create_user
from tests.integration.test_harness import issue_key
from tests.support import free_port, http_client, serve_app, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_search_box_shows_aidb_hits_and_learning_page_shows_hybrid_stats(
    stack_settings: StackSettings, page: Page, tmp_path: Path
) -> None:
    settings = load_settings(
        data_dir=stack_settings.data_dir,
        postgres=stack_settings.postgres.model_dump(),
        rate_limit={"enabled": False},
        aidb={"indexer_poll_seconds": 0.2},
    )
    _, service_key = await issue_key(settings, ["admin"])
    await create_user(settings, "admin", "admin")
    aidb = create_aidb(build_core("aidb", settings))
    hybrid = create_hybrid(build_core("hybrid", settings))
    async with serve_app(aidb.http_app()) as aidb_url, serve_app(hybrid.http_app()) as hybrid_url:
        async with http_client(aidb_url, service_key) as client:
            stored = await client.call_tool(
                "store_document",
                {"content": "Operators log in with argon2-hashed passwords.", "title": "Dashboard security"},
            )
            assert not stored.is_error, stored.content

            async def indexed() -> bool:
                found = await client.call_tool("search", {"query": "argon2 passwords"})
                return bool(found.structured_content and found.structured_content["hits"])

            await wait_until(indexed, timeout=30, interval=0.2)
        dashboard_settings = load_settings(
            data_dir=stack_settings.data_dir,
            postgres=stack_settings.postgres.model_dump(),
            dashboard={
                "service_api_key": service_key,
                "aidb_url": aidb_url,
                "hybrid_url": hybrid_url,
                "ralph_url": f"http://127.0.0.1:{free_port()}",
            },
        )
        async with serve_app(create_app(dashboard_settings)) as url:
            await log_in(page, url)
            await page.goto(f"{url}/search")
            await page.fill("#q", "argon2 passwords")
            await page.click("#search")
            await expect(page.locator("#hits li").first).to_contain_text("Dashboard security")
            await page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
            await page.goto(f"{url}/learning")
            await expect(page.locator("h2").first).to_have_text("Pipeline")
            await expect(page.locator(".card").first).to_contain_text("Interactions")
            await page.screenshot(path=str(ARTIFACTS / "learning.png"), full_page=True)
