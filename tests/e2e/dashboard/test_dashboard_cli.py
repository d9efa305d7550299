"""The dashboard's CLI surface: `dashboard-user create`, `serve dashboard` (HTTP only)."""

import subprocess

import anyio
import httpx
import pytest

from mcp_servers.shared.config import StackSettings
from tests.e2e.test_transports import stack_env
from tests.integration.dashboard.dashboard_support import browser_client, login
from tests.support import VENV_BIN, free_port, wait_http_ok

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def _run(args: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([str(VENV_BIN / "mcp-stack"), *args], input=stdin, env=env, check=False)


async def test_dashboard_user_create_then_serve_dashboard_alone(stack_settings: StackSettings) -> None:
    env = stack_env(stack_settings)
    created = await _run(
        ["dashboard-user", "create", "--username", "ops", "--role", "viewer", "--password-stdin"],
        env,
        b"long enough pw\n",
    )
    assert created.returncode == 0, created.stderr
    again = await _run(["dashboard-user", "create", "--username", "ops", "--password-stdin"], env, b"long enough pw\n")
    assert again.returncode == 1 and b"exists already" in again.stderr
    short = await _run(["dashboard-user", "create", "--username", "x", "--password-stdin"], env, b"short\n")
    assert short.returncode == 2 and len(short.stderr.decode().strip().splitlines()) == 1
    stdio = await _run(["serve", "dashboard"], env)
    assert stdio.returncode == 2 and b"HTTP only" in stdio.stderr

    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "mcp-stack"), "serve", "dashboard", "--transport", "http", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http_ok(f"{url}/health", timeout=60, process=process)
        async with browser_client(url) as client:
            assert (await login(client, "ops", "long enough pw")).status_code == 303
            assert (await client.get("/")).status_code == 200
        async with httpx.AsyncClient() as plain:
            assert (await plain.get(f"{url}/")).status_code == 303
    finally:
        process.terminate()
        assert await anyio.to_thread.run_sync(process.wait, 20) == 0
