"""The dashboard in a real browser (Playwright + Debian's Chromium) in front of a live Ralph server."""

import pytest
from mcp import MCPError
from playwright.async_api import Page, expect

from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from tests.e2e.dashboard.conftest import ARTIFACTS, LiveStack, log_in
from tests.support import http_client, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_unauthenticated_visit_redirects_to_login_and_wrong_password_is_refused(
    live_stack: LiveStack, page: Page
) -> None:
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    assert page.url.startswith(f"{live_stack.dashboard_url}/login")
    await log_in(page, live_stack.dashboard_url, password="wrong password")
    await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")
    await shot(page, "login-refused")
    assert "mcpdash_session" not in {cookie["name"] for cookie in await page.context.cookies()}


async def test_login_shows_live_servers_on_the_overview(live_stack: LiveStack, page: Page) -> None:
    await log_in(page, live_stack.dashboard_url)
    await expect(page).to_have_url(f"{live_stack.dashboard_url}/")
    await expect(page.locator('tr[data-server="ralph"] [data-field="state"]')).to_have_text("ready")
    await expect(page.locator('tr[data-server="aidb"] [data-field="state"]')).to_have_text("down")
    await expect(page.locator('tr[data-server="ralph"] [data-field="version"]')).not_to_be_empty()
    await expect(page.locator('tr[data-server="ralph"] [data-field="checks"]')).to_contain_text("postgres: ok")
    # The charts draw once two samples exist.
    await expect(page.locator('svg[data-chart="ralph"] polyline').first).to_be_attached()
    await shot(page, "overview")


async def test_rate_limit_changed_in_the_ui_is_what_an_mcp_client_then_gets(live_stack: LiveStack, page: Page) -> None:
    assert live_stack.ralph is not None
    async with http_client(live_stack.ralph_url, live_stack.client_token, mode="2026-07-28") as client:
        for _ in range(5):  # the configured limit (burst 60) admits these
            assert not (await client.call_tool("list_tasks", {})).is_error
        await log_in(page, live_stack.dashboard_url)
        await page.goto(f"{live_stack.dashboard_url}/config")
        await page.fill('[id="cfg-rate_limit.calls_per_minute"]', "1")
        await page.fill('[id="cfg-rate_limit.burst"]', "2")
        await page.click("#save-config")
        await expect(page.locator("#config-message")).to_have_text("2 setting(s) changed")
        await expect(page.locator("#audit")).to_contain_text("rate_limit.burst")
        await shot(page, "config-changed")
        runtime = live_stack.ralph.core.runtime

        async def applied() -> bool:
            return bool(runtime.value("rate_limit.burst") == 2)

        await wait_until(applied, timeout=15)
        with pytest.raises(MCPError) as refused:
            for _ in range(3):
                await client.call_tool("list_tasks", {})
    assert refused.value.code == RATE_LIMITED


async def test_submitting_and_stopping_a_task_updates_the_page_live(live_stack: LiveStack, page: Page) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    await page.evaluate("window.__noReload = true")
    await page.fill("#prompt", "work until stopped")
    await page.click("#submit")
    row = page.locator("#tasks tr").first
    await expect(row.locator(".status")).to_have_text("running", timeout=20_000)
    await shot(page, "task-running")
    await row.locator("button.stop").click()
    await expect(row.locator(".status")).to_have_text("stopped", timeout=20_000)
    await shot(page, "task-stopped")
    assert await page.evaluate("window.__noReload === true"), "the page reloaded"


async def test_breaker_opened_by_stopping_a_dependency_shows_open_then_closed(
    live_stack: LiveStack, page: Page
) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/breakers")
    await page.evaluate("window.__noReload = true")
    cell = page.locator('[data-breaker="dashboard/ralph"]')
    await expect(cell).to_contain_text("CLOSED")
    await live_stack.stop_ralph()
    await expect(cell).to_contain_text("OPEN", timeout=20_000)
    await expect(cell).not_to_contain_text("HALF")
    await shot(page, "breaker-open")
    await live_stack.start_ralph()
    await expect(cell).to_contain_text("CLOSED", timeout=20_000)
    await expect(page.locator('[data-breaker="ralph/postgres"]')).to_contain_text("CLOSED")
    await shot(page, "breaker-closed")
    assert await page.evaluate("window.__noReload === true")


async def test_task_awaiting_approval_is_approved_and_followed_live_on_its_page(
    live_stack: LiveStack, page: Page
) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    await page.fill("#prompt", "needs a human first")
    await page.check('input[name="require_approval"]')
    await page.click("#submit")
    row = page.locator("#tasks tr").first
    await expect(row.locator(".status")).to_have_text("awaiting_approval")
    await row.locator("a").click()
    await expect(page.locator('[data-field="status"]')).to_have_text("awaiting_approval")
    await page.evaluate("window.__noReload = true")
    await page.click("#approve")
    await expect(page.locator('[data-field="status"]')).to_have_text("running", timeout=20_000)
    await expect(page.locator("#iterations li").first).to_contain_text("#1")
    await shot(page, "task-detail-running")
    await page.click("#stop")
    await expect(page.locator('[data-field="status"]')).to_have_text("stopped", timeout=20_000)
    await expect(page.locator('[data-field="completion_reason"]')).to_have_text("stopped_by_user")
    assert await page.evaluate("window.__noReload === true")
