"""`mcp-stack up` with the dashboard: first admin printed once, service key wired, restart of a child, audited."""

import re
import signal
import subprocess

import anyio
import httpx
import pytest

from mcp_servers.shared.config import StackSettings
from tests.e2e.test_transports import stack_env
from tests.integration.dashboard.dashboard_support import browser_client, csrf_token, login
from tests.support import VENV_BIN, free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DASHBOARD_LOGIN = re.compile(r"Dashboard login \(shown once\): (\S+) / (\S+)")


async def test_up_starts_the_dashboard_and_restarts_a_server_on_an_admin_request(
    stack_settings: StackSettings,
) -> None:
    ports = {name: free_port() for name in ("aidb", "hybrid", "ralph", "dashboard")}
    env = stack_env(stack_settings) | {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(p) for name, p in ports.items()}
    process = await anyio.open_process([str(VENV_BIN / "mcp-stack"), "up"], env=env, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        banner = ""
        with anyio.fail_after(240):
            async for chunk in process.stdout:
                banner += chunk.decode()
                if DASHBOARD_LOGIN.search(banner):
                    break
        found = DASHBOARD_LOGIN.search(banner)
        assert found is not None, banner
        username, password = found.groups()
        dashboard = f"http://127.0.0.1:{ports['dashboard']}"
        ralph = f"http://127.0.0.1:{ports['ralph']}"
        async with browser_client(dashboard) as client:
            assert (await login(client, username, password)).status_code == 303

            async def ralph_ready_for(seconds: float) -> bool:
                status = (await client.get("/api/status")).json()["servers"]["ralph"]
                return status["state"] == "ready" and (status["uptime_seconds"] or 0) >= seconds

            # The dashboard reaches every server with the service key `up` gave it.
            await wait_until(lambda: ralph_ready_for(2.0), timeout=60, interval=0.2)
            before = (await client.get("/api/status")).json()["servers"]["ralph"]["uptime_seconds"]
            token = await csrf_token(client)
            headers = {"Origin": dashboard, "X-CSRF-Token": token, "Accept": "application/json"}
            requested = await client.post("/services/ralph/restart", headers=headers)
            assert requested.status_code == 200, requested.text
            command_id = requested.json()["command_id"]

            async def carried_out() -> bool:
                return bool((await client.get(f"/services/commands/{command_id}")).json()["done"])

            await wait_until(carried_out, timeout=90, interval=0.2)
            assert (await client.get(f"/services/commands/{command_id}")).json()["result"] == "restarted"
            async with httpx.AsyncClient() as plain:
                assert (await plain.get(f"{ralph}/health")).status_code == 200

            async def restarted() -> bool:
                status = (await client.get("/api/status")).json()["servers"]["ralph"]
                return bool(status["state"] == "ready" and status["uptime_seconds"] < before)

            await wait_until(restarted, timeout=60, interval=0.2)
            audit = (await client.get("/config")).text
            assert "service.restart" in audit and ">ralph<" in audit
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
