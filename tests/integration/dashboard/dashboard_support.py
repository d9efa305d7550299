"""Helpers for dashboard tests: serve the app, create users, log in like a browser (login token, Origin)."""

import contextlib
import re
from collections.abc import AsyncIterator

import httpx

from mcp_servers.dashboard.auth import Passwords
from mcp_servers.dashboard.store import DashboardStore, Role
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PASSWORD = "correct horse battery"


async def create_user(settings: StackSettings, username: str, role: Role = "admin", password: str = PASSWORD) -> None:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        await DashboardStore(database).create_user(username, await Passwords().hash(password), role)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    """GET the form, POST it back with its token from the dashboard's own origin; returns the POST's response."""
    page = await client.get("/login")
    match = LOGIN_TOKEN.search(page.text)
    assert match is not None, page.text
    return await client.post(
        "/login",
        data={"username": username, "password": password, "login_token": match.group(1), "next": "/"},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )


async def csrf_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/config")
    match = CSRF_META.search(page.text)
    assert match is not None, page.text
    return match.group(1)


@contextlib.asynccontextmanager
async def browser_client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=30) as client:
        yield client
