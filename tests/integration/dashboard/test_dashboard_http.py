"""The dashboard over real HTTP: sessions on every route, CSRF and origin checks, static confinement, login limits."""

from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from starlette.routing import Mount, Route

from mcp_servers.dashboard.app import create_app
from mcp_servers.dashboard.security import HEADERS
from mcp_servers.shared.config import StackSettings
from tests.integration.dashboard.dashboard_support import PASSWORD, browser_client, csrf_token, login

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

OPEN_PATHS = {"/login", "/health", "/ready"}  # /ready wants a bearer key instead of a session


def _concrete(path: str) -> str:
    return (
        path.replace("{task_id}", "0f0e0d0c-0000-4000-8000-000000000000")
        .replace("{name}", "ralph")
        .replace("{command_id}", "1")
    )


def _routes(settings: StackSettings) -> list[tuple[str, str]]:
    """(method, path) of every route of the app except login, health/ready and static files."""
    found = []
    for route in create_app(settings).routes:
        if isinstance(route, Route) and route.path not in OPEN_PATHS:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, _concrete(route.path)))
        else:
            assert isinstance(route, Mount | Route), route
    return found


async def test_every_route_except_login_and_static_requires_a_session(
    dashboard_url: str, dashboard_settings: StackSettings
) -> None:
    routes = _routes(dashboard_settings)
    assert ("GET", "/") in routes and ("POST", "/config") in routes and ("GET", "/events/status") in routes
    async with browser_client(dashboard_url) as client:
        for method, path in routes:
            response = await client.request(method, path, headers={"Origin": dashboard_url})
            if method == "GET" and not path.startswith("/events/"):
                assert response.status_code == 303, (method, path)
                assert urlsplit(response.headers["location"]).path == "/login"
            else:
                assert response.status_code == 401, (method, path, response.status_code)
        assert (await client.get("/ready")).status_code == 401
        assert (await client.get("/login")).status_code == 200
        assert (await client.get("/static/dashboard.js")).status_code == 200


async def test_login_wrong_password_is_refused_and_sets_no_session(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        response = await login(client, "alice", "not the password")
        assert response.status_code == 401
        assert "mcpdash_session" not in response.cookies
        assert (await login(client, "nobody", PASSWORD)).status_code == 401
        assert (await client.get("/")).status_code == 303


async def test_login_sets_a_strict_http_only_session_and_logout_revokes_it(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        response = await login(client, "alice")
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
        stolen = client.cookies.get("mcpdash_session")
        assert (await client.get("/")).status_code == 200
        token = await csrf_token(client)
        assert (
            await client.post("/logout", data={"csrf_token": token}, headers={"Origin": dashboard_url})
        ).status_code == 303
    # The signed cookie is still well-formed, but its server-side session is revoked.
    async with browser_client(dashboard_url) as other:
        other.cookies.set("mcpdash_session", stolen or "")
        assert (await other.get("/")).status_code == 303


async def test_post_without_a_valid_csrf_token_is_refused(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        await login(client, "alice")
        token = await csrf_token(client)
        origin = {"Origin": dashboard_url}
        data = {"rate_limit.burst": "7"}
        assert (await client.post("/config", data=data, headers=origin)).status_code == 403
        assert (await client.post("/config", data={**data, "csrf_token": "forged"}, headers=origin)).status_code == 403
        forged_header = {**origin, "X-CSRF-Token": "forged", "Accept": "application/json"}
        assert (await client.post("/config", data=data, headers=forged_header)).status_code == 403
        ok = await client.post(
            "/config", data=data, headers={**origin, "X-CSRF-Token": token, "Accept": "application/json"}
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["changed"] == [{"key": "rate_limit.burst", "old": 60, "new": 7}]


async def test_cross_origin_post_is_refused_even_with_the_token(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        await login(client, "alice")
        token = await csrf_token(client)
        data = {"rate_limit.burst": "7", "csrf_token": token}
        assert (await client.post("/config", data=data, headers={"Origin": "http://evil.example"})).status_code == 403
        referer = {"Referer": "http://evil.example/page"}
        assert (await client.post("/config", data=data, headers=referer)).status_code == 403
        assert (await client.post("/config", data=data, headers={"Origin": "null"})).status_code == 403
        page = await client.get("/config")
        assert "evil" not in page.text and ">7<" not in page.text


async def test_cross_origin_login_is_refused(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        await client.get("/login")
        response = await client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "login_token": "x"},
            headers={"Origin": "http://evil.example"},
        )
        assert response.status_code == 403


async def test_viewer_cannot_change_config(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        await login(client, "victor")
        token = await csrf_token(client)
        response = await client.post(
            "/config",
            data={"rate_limit.burst": "7", "csrf_token": token},
            headers={"Origin": dashboard_url, "Accept": "application/json"},
        )
        assert response.status_code == 403


async def test_invalid_config_value_is_refused_by_the_settings_model(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        await login(client, "alice")
        token = await csrf_token(client)
        headers = {"Origin": dashboard_url, "X-CSRF-Token": token, "Accept": "application/json"}
        for field, value in [
            ("rate_limit.burst", "0"),
            ("rate_limit.calls_per_minute", "-1"),
            ("observability.log_level", "LOUD"),
            ("hybrid.checkpoint_every_events", "x"),
        ]:
            response = await client.post("/config", data={field: value}, headers=headers)
            assert response.status_code == 400, (field, response.text)
            assert field in response.json()["message"]


async def _raw_get(url: str, raw_path: str) -> int:
    """Send the path byte for byte (HTTP clients normalise `..` away)."""
    parts = urlsplit(url)
    async with await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80) as stream:
        await stream.send(f"GET {raw_path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        with anyio.fail_after(10):
            while b"\r\n" not in head:
                head += await stream.receive()
    return int(head.split(b" ")[1])


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/../../cli.py",
        "/static/%2e%2e/app.py",
        "/static/%2E%2E/%2E%2E/shared/config.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%5capp.py",
        "/static/....//app.py",
        "/static/%252e%252e/app.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/../templates/base.html",
    ],
)
async def test_static_traversal_gets_404(dashboard_url: str, path: str) -> None:
    assert await _raw_get(dashboard_url, path) == 404
    assert await _raw_get(dashboard_url, "/static/dashboard.css") == 200


async def test_login_attempts_are_rate_limited(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        for _ in range(3):
            assert (await login(client, "alice", "wrong")).status_code == 401
        limited = await login(client, "alice")  # even the right password, once the budget is spent
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert "mcpdash_session" not in limited.cookies


async def test_every_response_carries_the_security_headers(dashboard_url: str) -> None:
    async with browser_client(dashboard_url) as client:
        for path in ("/login", "/static/dashboard.js", "/", "/health"):
            response = await client.get(path)
            for name, value in HEADERS.items():
                assert response.headers[name] == value, (path, name)
        csp = HEADERS["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


async def test_ready_answers_a_bearer_key_for_probes(dashboard_url: str, dashboard_settings: StackSettings) -> None:
    from tests.integration.test_harness import issue_key

    _, token = await issue_key(dashboard_settings, ["read"])
    async with httpx.AsyncClient(base_url=dashboard_url) as client:
        response = await client.get("/ready", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok"}
