"""Every route of every HTTP app refuses an unauthenticated request, found by walking the apps' route tables.

The scan reads `StackServer.http_app()` of each registered MCP server and the dashboard's app, including mounts,
so a route added later is covered without editing this file. Open by design: `/health`, `/.well-known/*`, the
dashboard's login page and its static files. Then credential edge cases: empty or missing bearer, two
Authorization headers, other schemes, a lowercase scheme, a revoked key; a tampered, expired or logged-out
dashboard session cookie.
"""

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from mcp_servers.cli import SERVERS, build_server
from mcp_servers.dashboard.app import create_app
from mcp_servers.dashboard.auth import SESSION_COOKIE
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.integration.dashboard.dashboard_support import browser_client, create_user, login
from tests.support import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MCP_SERVERS = tuple(name for name in SERVERS if name != "dashboard")
OPEN_EXACT = {"/health", "/login"}
OPEN_PREFIXES = ("/.well-known/", "/static")
ANY_METHOD = ("GET", "POST", "PUT", "DELETE")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "scan", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
SESSION_SECRET = "hardening-scan-session-secret"


def concrete(path: str) -> str:
    """A request path for a route template: ints for `:int`, a UUID for every other parameter."""
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            part = "1" if part.endswith(":int}") else "0f0e0d0c-0000-4000-8000-000000000000"
        parts.append(part)
    return "/".join(parts)


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, concrete path) of every endpoint, descending into mounts; a mounted ASGI app gets ANY_METHOD."""
    for route in routes:
        if isinstance(route, Mount):
            path = prefix + route.path
            inner = getattr(route.app, "routes", None)
            if inner:
                yield from walk(list(inner), path)
            else:
                for method in ANY_METHOD:
                    yield method, concrete(path) + "/"
        elif isinstance(route, Route):
            for method in sorted(route.methods or ANY_METHOD):
                yield method, concrete(prefix + route.path)
        else:
            raise AssertionError(f"unknown route type {type(route).__name__}: extend the scan")


def is_open(path: str) -> bool:
    return path in OPEN_EXACT or path.startswith(OPEN_PREFIXES)


def refused(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code in (302, 303, 307) and urlsplit(response.headers["location"]).path == "/login"


async def request(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    if method == "POST" and path == "/mcp":
        kwargs.setdefault("json", INITIALIZE)
        kwargs["headers"] = {**MCP_HEADERS, **kwargs.get("headers", {})}
    if method == "GET" and path in ("/sse", "/mcp"):
        # A stream that was let in would not end: read the status line only.
        async with client.stream(method, path, **kwargs) as response:
            return response
    return await client.request(method, path, **kwargs)


async def issue(settings: StackSettings, scopes: list[str], *, revoked: bool = False) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        issued = await keys.create("auth-scan", scopes)
        if revoked:
            await keys.revoke(issued.key.key_id)
        return issued.token


@pytest.fixture(params=MCP_SERVERS)
async def mcp_app(
    request: pytest.FixtureRequest, stack_settings: StackSettings
) -> AsyncIterator[tuple[str, Starlette]]:
    settings = stack_settings.model_copy(update={"data_dir": stack_settings.data_dir / request.param})
    app = build_server(request.param, settings).http_app()
    async with serve_app(app) as url:
        yield url, app


@pytest.fixture
def scan_dashboard_settings(stack_settings: StackSettings) -> StackSettings:
    closed = {f"{name}_url": f"http://127.0.0.1:{free_port()}" for name in MCP_SERVERS}
    dashboard = stack_settings.dashboard.model_copy(update={**closed, "session_secret": SecretStr(SESSION_SECRET)})
    return stack_settings.model_copy(update={"dashboard": dashboard})


async def test_every_mcp_server_route_refuses_anonymous_requests(mcp_app: tuple[str, Starlette]) -> None:
    url, app = mcp_app
    endpoints = list(walk(app.routes))
    assert ("POST", "/mcp") in endpoints and ("GET", "/metrics") in endpoints and ("POST", "/messages/") in endpoints
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for method, path in endpoints:
            response = await request(client, method, path)
            if is_open(path):
                assert response.status_code < 400, (method, path, response.status_code)
            else:
                assert refused(response), (method, path, response.status_code)
                if response.status_code == 401:
                    assert response.headers["www-authenticate"].lower().startswith("bearer"), (method, path)


def bad_credentials(valid: str, revoked: str) -> dict[str, list[tuple[str, str]]]:
    """Header lists that must all be refused."""
    return {
        "no header": [],
        "bare scheme": [("Authorization", "Bearer")],
        "basic scheme": [("Authorization", f"Basic {valid}")],
        "token scheme": [("Authorization", f"Token {valid}")],
        "no scheme": [("Authorization", valid)],
        "unknown key": [("Authorization", "Bearer mcp_0000_notakey")],
        "lowercase scheme, unknown key": [("Authorization", "bearer mcp_0000_notakey")],
        "tampered key": [("Authorization", f"Bearer {valid[:-2]}xx")],
        "revoked key": [("Authorization", f"Bearer {revoked}")],
        "two headers, valid first": [("Authorization", f"Bearer {valid}"), ("Authorization", "Bearer nope")],
        "two headers, valid second": [("Authorization", "Bearer nope"), ("Authorization", f"Bearer {valid}")],
        "two valid headers": [("Authorization", f"Bearer {valid}"), ("Authorization", f"Bearer {valid}")],
        "key in a cookie": [("Cookie", f"token={valid}")],
    }


async def test_credential_edge_cases_are_refused_and_a_valid_key_is_let_in(
    mcp_app: tuple[str, Starlette], stack_settings: StackSettings
) -> None:
    url, app = mcp_app
    valid = await issue(stack_settings, ["read"])
    revoked = await issue(stack_settings, ["read"], revoked=True)
    protected = [
        (m, p)
        for m, p in walk(app.routes)
        if not is_open(p) and (m, p) in {("POST", "/mcp"), ("GET", "/ready"), ("GET", "/metrics")}
    ]
    assert len(protected) == 3
    failures = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for label, headers in bad_credentials(valid, revoked).items():
            for method, path in protected:
                response = await request(client, method, path, headers=httpx.Headers(headers))
                if not refused(response):
                    failures.append((label, method, path, response.status_code))
        for scheme in ("Bearer", "bearer", "BEARER"):  # RFC 6750 / RFC 9110: the scheme is case-insensitive
            for method, path in protected:
                response = await request(client, method, path, headers={"Authorization": f"{scheme} {valid}"})
                assert not refused(response), (scheme, path, response.status_code)
                assert response.status_code < 500 or path == "/ready", (scheme, path, response.status_code)
        # h11 (httpx) will not send a header value with trailing space: write the request by hand.
        for path in ("/ready", "/metrics"):
            status = await raw_status(url, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \r\n")
            if status != 401:
                failures.append(("empty bearer", "GET", path, status))
    assert not failures, failures


async def raw_status(url: str, head: str) -> int:
    """Send a hand-written HTTP/1.1 request head (plus Connection: close) and return the response status."""
    port = int(url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send((head + "Connection: close\r\n\r\n").encode())
        with anyio.fail_after(10):
            first = await stream.receive()
    return int(first.split(b" ", 2)[1])


async def test_every_dashboard_route_refuses_requests_without_a_live_session(
    scan_dashboard_settings: StackSettings,
) -> None:
    await create_user(scan_dashboard_settings, "scan-admin", "admin")
    app = create_app(scan_dashboard_settings)
    endpoints = list(walk(app.routes))
    assert ("POST", "/config") in endpoints and ("GET", "/api/status") in endpoints
    async with serve_app(app) as url, browser_client(url) as client:
        assert (await login(client, "scan-admin")).status_code == 303
        live = client.cookies[SESSION_COOKIE]
        serializer = URLSafeTimedSerializer(SESSION_SECRET, salt="mcpdash-session")
        session_id = serializer.loads(live)
        cookies = {
            "none": None,
            "empty": "",
            "garbage": "not-a-signed-value",
            "tampered signature": live[:-3] + ("AAA" if not live.endswith("AAA") else "BBB"),
            "tampered payload": serializer.dumps(session_id + "x"),
            "signed with another secret": URLSafeTimedSerializer("other", salt="mcpdash-session").dumps(session_id),
            "expired signature": expired_cookie(session_id, scan_dashboard_settings),
        }
        for label, cookie in cookies.items():
            client.cookies.clear()
            if cookie is not None:
                client.cookies.set(SESSION_COOKIE, cookie)
            await assert_all_refused(client, url, endpoints, label)
        # The genuine cookie gets in (the positive control), then not once the session is logged out.
        client.cookies.set(SESSION_COOKIE, live)
        assert (await client.get("/")).status_code == 200
        page = await client.get("/config")
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        assert (await client.post("/logout", headers={"Origin": url, "X-CSRF-Token": token})).status_code in (
            200,
            303,
        )
        client.cookies.set(SESSION_COOKIE, live)
        await assert_all_refused(client, url, endpoints, "logged out")


def expired_cookie(session_id: str, settings: StackSettings) -> str:
    """The real session id, correctly signed, but with a timestamp older than the session's max age."""
    past = int(time.time()) - settings.dashboard.session_max_age_seconds - 60

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return past

    return URLSafeTimedSerializer(SESSION_SECRET, salt="mcpdash-session", signer=PastSigner).dumps(session_id)


async def assert_all_refused(client: httpx.AsyncClient, url: str, endpoints: list[tuple[str, str]], label: str) -> None:
    failures = []
    for method, path in endpoints:
        if is_open(path):
            continue
        headers = {"Origin": url}
        if path == "/ready":
            continue  # the probe route takes a bearer key, not a session: checked below
        response = await request(client, method, path, headers=headers)
        if not refused(response):
            failures.append((method, path, response.status_code))
    ready = await client.get("/ready")
    if ready.status_code != 401:
        failures.append(("GET", "/ready", ready.status_code))
    assert not failures, (label, failures)
