"""The first hour in the browser: a task form that offers what Ralph really has, actions only where they apply,
verify output on the task page, human units, charts with axes and time, and a banner when no LLM is configured."""

import re

import pytest
from playwright.async_api import Page, expect

from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.shared.harness import build_core
from tests.e2e.dashboard.conftest import LiveStack, _bind, log_in
from tests.e2e.dashboard.test_dashboard_browser import shot
from tests.support import serve_app

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def test_task_form_offers_ralphs_backends_and_limits_and_keeps_the_chosen_backend(
    live_stack: LiveStack, page: Page
) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    options = page.locator("#backend option")
    await expect(options).to_have_text(["command", "command:default", "command:quick"])
    await expect(page.locator("#backend")).to_have_value("command")
    for field in ("#workspace", "#verify_command", "#max_seconds", "#max_cost_usd", "#max_iterations"):
        await expect(page.locator(field)).to_be_visible()
    await shot(page, "task-form")
    await page.select_option("#backend", "command:quick")
    await page.fill("#prompt", "do a little")
    await page.fill("#max_iterations", "1")
    await page.fill("#max_seconds", "60")
    await page.click("#submit")
    await expect(page.locator("#submit-result")).to_contain_text("queued")
    await expect(page.locator("#backend")).to_have_value("command:quick")  # not reset to the default
    await expect(page.locator("#tasks tr").first.locator("td").nth(3)).to_have_text("command:quick")
    await page.reload()
    await expect(page.locator("#backend")).to_have_value("command:quick")  # remembered across visits
    # A cost cap on a backend that cannot report cost is refused with the reason.
    await page.fill("#prompt", "spend")
    await page.fill("#max_cost_usd", "1")
    await page.click("#submit")
    await expect(page.locator("#submit-result")).to_contain_text("does not report what an iteration costs")


async def test_actions_appear_only_on_tasks_they_apply_to(live_stack: LiveStack, page: Page) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    await page.fill("#prompt", "wait for a human")
    await page.check('input[name="require_approval"]')
    await page.click("#submit")
    await page.locator("#tasks tr").first.locator("a").click()
    await expect(page.locator('[data-field="status"]')).to_have_text("awaiting_approval")
    for button in ("#stop", "#approve", "#reject"):
        await expect(page.locator(button)).to_be_visible()
    await page.click("#reject")
    await expect(page.locator('[data-field="status"]')).to_have_text("rejected", timeout=20_000)
    for button in ("#stop", "#approve", "#reject"):
        await expect(page.locator(button)).to_be_hidden()  # live, without a reload
    await page.reload()
    for button in ("#stop", "#approve", "#reject"):
        await expect(page.locator(button)).to_be_hidden()
    await shot(page, "task-finished-no-actions")


async def test_task_page_shows_the_failing_verify_output_and_human_units(live_stack: LiveStack, page: Page) -> None:
    await log_in(page, live_stack.dashboard_url)
    await page.goto(f"{live_stack.dashboard_url}/tasks")
    await page.select_option("#backend", "command:quick")
    await page.fill("#prompt", "make the test pass")
    await page.fill("#verify_command", "sh -c 'echo FAILED test_answer: expected 42; exit 1'")
    await page.fill("#max_iterations", "2")
    await page.click("#submit")
    await page.locator("#tasks tr").first.locator("a").click()
    await expect(page.locator('[data-field="status"]')).to_have_text("limit_reached", timeout=30_000)
    await expect(page.locator('[data-verify="summary"]')).to_have_text("after iteration 2: failed, exit 1")
    await expect(page.locator('[data-verify="output"]')).to_contain_text("FAILED test_answer: expected 42")
    await expect(page.locator("#iterations li").first).to_contain_text("verify: failed (exit 1)")
    await expect(page.locator('[data-field="elapsed_seconds"]')).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))
    await expect(page.locator('[data-field="cost_usd"]')).to_have_text("$0.0000 (not reported)")
    await shot(page, "task-verify-output")


async def test_overview_shows_uptime_in_human_units_and_charts_with_axes_and_times(
    live_stack: LiveStack, page: Page
) -> None:
    await log_in(page, live_stack.dashboard_url)
    uptime = page.locator('tr[data-server="ralph"] [data-field="uptime"]')
    await expect(uptime).to_have_text(re.compile(r"^\d+(\.\d)? s$|^\d+ min \d+ s$|^\d+ ms$"))
    chart = page.locator('svg[data-chart="ralph"][data-unit="rate"]')
    await expect(chart.locator("polyline")).to_be_attached(timeout=20_000)
    times = chart.locator("text.tick.x")
    await expect(times).to_have_count(2)
    await expect(times.first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    await expect(chart.locator("text.tick.y").last).to_have_text("0.00/s")
    await expect(chart.locator("line.axis")).to_have_count(2)
    await shot(page, "overview-charts")


async def test_a_banner_says_when_hybrid_has_no_llm_configured(live_stack: LiveStack, page: Page) -> None:
    await log_in(page, live_stack.dashboard_url)
    await expect(page.locator("#llm-banner")).to_have_count(0)  # Hybrid down: nothing to say about its LLMs
    hybrid = create_hybrid(build_core("hybrid", live_stack.settings))  # no LLM backend configured
    async with serve_app(hybrid.http_app(), _bind(live_stack.hybrid_port)):
        await expect(page.locator('tr[data-server="hybrid"] [data-field="state"]')).to_have_text(
            "ready", timeout=30_000
        )
        await page.reload()
        await expect(page.locator("#llm-banner")).to_contain_text("No LLM backend is configured")
        await expect(page.locator("#llm-banner")).to_contain_text("mcp-stack doctor")
        await shot(page, "overview-no-llm-banner")
        await page.goto(f"{live_stack.dashboard_url}/tasks")
        await expect(page.locator("#llm-banner")).to_be_visible()
        await page.goto(f"{live_stack.dashboard_url}/learning")
        await expect(page.locator("#llm-banner")).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text("True")
        await expect(page.locator("main")).not_to_contain_text(" bytes")
        await shot(page, "learning-no-llm")
