"""Issue 12's dashboard attacks against real processes: `mcp-stack serve dashboard` in front of `mcp-stack serve
ralph`, as an operator runs them (uvicorn, the CLI's settings, no test server in between). Every attack must fail.

Distinct client addresses are real: loopback is a /8, so a client bound to 127.0.0.2 is another peer than one on
127.0.0.3.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mcp_servers.dashboard.auth import ADDRESS_USERNAMES
from mcp_servers.dashboard.security import HEADERS
from mcp_servers.dashboard.store import Role
from mcp_servers.shared.config import StackSettings
from tests.e2e.hardening.processes import served
from tests.integration.dashboard.dashboard_support import create_user, csrf_token, login
from tests.integration.test_harness import issue_key
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

LOGIN_BURST = 3
USER_BURST = 3


@dataclass(frozen=True)
class Stack:
    dashboard_url: str


@pytest.fixture(scope="module")
async def stack(module_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Ralph (no workers) and the dashboard, with small login and per-user budgets, for the whole module."""
    logs: Path = tmp_path_factory.mktemp("dashboard-attacks")
    _, service_key = await issue_key(module_settings, ["ralph:write", "read"])
    users: list[tuple[str, Role]] = [("admin", "admin"), ("owner", "admin"), ("viewer", "viewer"), ("other", "viewer")]
    for name, role in users:
        await create_user(module_settings, name, role)
    async with served("ralph", module_settings, logs, env={"MCP_STACK_RALPH__WORKERS": "0"}) as ralph:
        env = {
            "MCP_STACK_DASHBOARD__SERVICE_API_KEY": service_key,
            "MCP_STACK_DASHBOARD__RALPH_URL": ralph.url,
            "MCP_STACK_DASHBOARD__AIDB_URL": f"http://127.0.0.1:{free_port()}",
            "MCP_STACK_DASHBOARD__HYBRID_URL": f"http://127.0.0.1:{free_port()}",
            "MCP_STACK_DASHBOARD__LOGIN_BURST": str(LOGIN_BURST),
            "MCP_STACK_DASHBOARD__LOGIN_ATTEMPTS_PER_MINUTE": "1",
            "MCP_STACK_DASHBOARD__USER_BURST": str(USER_BURST),
            "MCP_STACK_DASHBOARD__USER_CALLS_PER_MINUTE": "1",
            "MCP_STACK_DASHBOARD__SUPERVISED": "true",
        }
        async with served("dashboard", module_settings, logs, env=env) as dashboard:
            yield Stack(dashboard.url)


@contextlib.asynccontextmanager
async def client_from(url: str, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, follow_redirects=False, timeout=30) as client:
        yield client


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, response.status_code, name)


async def test_dns_rebinding_a_foreign_host_gets_421(stack: Stack) -> None:
    async with client_from(stack.dashboard_url) as client:
        for path in ("/login", "/", "/health", "/static/dashboard.js"):
            refused = await client.get(path, headers={"Host": "evil.example:8800"})
            assert refused.status_code == 421, path
            assert_security_headers(refused)
        assert (await client.get("/login")).status_code == 200


async def test_rotating_x_forwarded_for_does_not_reset_the_login_limit(stack: Stack) -> None:
    """From 127.0.0.1, whose forwarded headers uvicorn believes by default; the dashboard believes none unless
    configured."""
    budget = LOGIN_BURST * ADDRESS_USERNAMES
    async with client_from(stack.dashboard_url, "127.0.0.1") as client:
        statuses = []
        for attempt in range(budget + 2):
            client.headers["X-Forwarded-For"] = f"198.51.100.{attempt}"
            statuses.append((await login(client, f"nobody{attempt}", "wrong")).status_code)
        assert statuses == [401] * budget + [429, 429]


async def test_a_stranger_cannot_lock_the_owner_out(stack: Stack) -> None:
    async with client_from(stack.dashboard_url, "127.0.0.2") as stranger:
        for _ in range(LOGIN_BURST):
            assert (await login(stranger, "owner", "guess")).status_code == 401
        refused = await login(stranger, "owner")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert_security_headers(refused)
    async with client_from(stack.dashboard_url, "127.0.0.3") as owner:
        assert (await login(owner, "owner")).status_code == 303
        assert (await owner.get("/")).status_code == 200


async def test_no_500_for_an_out_of_range_command_id_or_a_nul_in_a_prompt(stack: Stack) -> None:
    async with client_from(stack.dashboard_url, "127.0.0.6") as admin:
        assert (await login(admin, "admin")).status_code == 303
        json = {"Accept": "application/json"}
        for command_id in ("99999999999999999999999", "9" * 5000, "0"):
            answer = await admin.get(f"/services/commands/{command_id}", headers=json)
            assert answer.status_code == 404, answer.text[:200]
            assert_security_headers(answer)
        headers = {**json, "Origin": stack.dashboard_url, "X-CSRF-Token": await csrf_token(admin)}
        refused = await admin.post("/tasks", data={"prompt": "a\x00b", "backend": "command"}, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "PeerToolError" and "NUL" in refused.json()["message"]
        assert_security_headers(refused)


async def test_one_viewers_page_loads_do_not_starve_another_user(stack: Stack) -> None:
    json = {"Accept": "application/json"}
    async with (
        client_from(stack.dashboard_url, "127.0.0.7") as viewer,
        client_from(stack.dashboard_url, "127.0.0.8") as other,
    ):
        assert (await login(viewer, "viewer")).status_code == 303
        assert (await login(other, "other")).status_code == 303
        # A tasks page costs one or more server calls (the list, the backends on offer): the viewer's budget of
        # USER_BURST calls runs out within USER_BURST page loads, each refused load a 429.
        statuses = []
        for _ in range(USER_BURST + 1):
            limited = await viewer.get("/tasks", headers=json)
            statuses.append(limited.status_code)
            if limited.status_code != 200:
                break
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
        assert int(limited.headers["Retry-After"]) >= 1
        assert_security_headers(limited)
        assert (await other.get("/tasks", headers=json)).status_code == 200
