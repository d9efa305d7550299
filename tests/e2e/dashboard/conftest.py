"""A live stack for browser tests: Ralph served over HTTP in-process (restartable on its port), the dashboard in
front of it with a service key, and Playwright driving Debian's Chromium."""

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import rich.console  # noqa: F401  # MCPServer imports rich lazily; that import calls os.getcwd (BlockBuster)
from playwright.async_api import Browser, Page, async_playwright

from mcp_servers.dashboard.app import create_app
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.dashboard.dashboard_support import PASSWORD, create_user
from tests.integration.test_harness import issue_key
from tests.support import REPO, free_port, serve_app
from tests.tools import CHROMIUM_ARGS, chromium_path

ARTIFACTS = REPO / "test-artifacts" / "dashboard"


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@dataclass
class LiveStack:
    """Ralph (stoppable, restartable on the same port) and the dashboard's URL.

    Ralph's server runs in a supervising task owned by the fixture (a task group must be left by the task that
    entered it); tests ask it to stop or start and wait until it did.
    """

    settings: StackSettings
    ralph_port: int
    hybrid_port: int = 0  # where the dashboard looks for Hybrid (not running unless a test serves it)
    dashboard_url: str = ""
    client_token: str = ""
    ralph: StackServer[Any] | None = None
    running: bool = False
    _want_running: bool = True
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _settled: anyio.Event = field(default_factory=anyio.Event)

    @property
    def ralph_url(self) -> str:
        return f"http://127.0.0.1:{self.ralph_port}"

    async def supervise(self) -> None:
        while True:
            if self._want_running:
                self.ralph = create_ralph(build_core("ralph", self.settings))
                async with serve_app(self.ralph.http_app(), _bind(self.ralph_port)):
                    self._set_running(True)
                    while self._want_running:
                        await self._wake.wait()
                        self._wake = anyio.Event()
                self._set_running(False)
            else:
                await self._wake.wait()
                self._wake = anyio.Event()

    def _set_running(self, value: bool) -> None:
        self.running = value
        self._settled.set()
        self._settled = anyio.Event()

    async def _switch(self, value: bool) -> None:
        self._want_running = value
        self._wake.set()
        with anyio.fail_after(60):
            while self.running != value:
                await self._settled.wait()

    async def start_ralph(self) -> None:
        await self._switch(True)

    async def stop_ralph(self) -> None:
        await self._switch(False)


@pytest.fixture
async def live_stack(stack_settings: StackSettings, tmp_path: Path) -> AsyncIterator[LiveStack]:
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    ralph_port = free_port()
    settings = load_settings(
        data_dir=stack_settings.data_dir,
        postgres=stack_settings.postgres.model_dump(),
        breaker={"failure_threshold": 2, "open_seconds": 1.0, "half_open_probes": 1},
        ralph={
            "workers": 2,
            "control_poll_seconds": 0.1,
            "workspace_roots": [str(workspaces)],
            # An agent that works until it is stopped; another that answers at once.
            "command_templates": {
                "default": ["sh", "-c", "echo working; exec sleep 600"],
                "quick": ["sh", "-c", "echo did some work"],
            },
            "allow_task_commands": True,
        },
    )
    # The dashboard may hand Ralph verify commands (the operator switched them on above).
    _, service_key = await issue_key(settings, ["admin", "ralph:exec"])
    hybrid_port = free_port()
    _, client_token = await issue_key(settings, ["read", "write"])
    await create_user(settings, "admin", "admin")
    dashboard_settings = load_settings(
        data_dir=stack_settings.data_dir,
        postgres=stack_settings.postgres.model_dump(),
        breaker={"failure_threshold": 2, "open_seconds": 1.0, "half_open_probes": 1},
        dashboard={
            "service_api_key": service_key,
            "ralph_url": f"http://127.0.0.1:{ralph_port}",
            "aidb_url": f"http://127.0.0.1:{free_port()}",  # not running: shown as down
            "hybrid_url": f"http://127.0.0.1:{hybrid_port}",
            "sample_seconds": 0.5,
            # Live task pages must move on Ralph's notifications alone: the safety-net re-read never comes.
            "stream_fallback_seconds": 600,
        },
    )
    stack = LiveStack(settings, ralph_port, hybrid_port, client_token=client_token)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stack.supervise)
        await stack.start_ralph()
        async with serve_app(create_app(dashboard_settings)) as url:
            stack.dashboard_url = url
            yield stack
        await stack.stop_ralph()
        tg.cancel_scope.cancel()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context()
    opened = await context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            await opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
        await context.close()


async def log_in(page: Page, base_url: str, username: str = "admin", password: str = PASSWORD) -> None:
    await page.goto(f"{base_url}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login")
