"""The dashboard's trust boundaries over real HTTP (issue 12): the stack's Host allow-list, forwarded headers only
from trusted proxies, login limits nobody can turn against another account, security headers on every response
(errors included) and `Secure` cookies on https.

Distinct client addresses are real: loopback is a /8, so a client bound to 127.0.0.2 is another peer than one on
127.0.0.3.
"""

import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_servers.dashboard.app import create_app
from mcp_servers.dashboard.auth import ADDRESS_USERNAMES, SESSION_COOKIE
from mcp_servers.dashboard.security import HEADERS
from mcp_servers.shared.config import StackSettings
from tests.integration.dashboard.dashboard_support import LOGIN_TOKEN, PASSWORD, browser_client, create_user, login
from tests.integration.peer_support import build_peer_server
from tests.integration.test_harness import issue_key
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BURST = 3  # the fixture's login_burst


@contextlib.asynccontextmanager
async def client_from(url: str, address: str, **options: object) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client whose connections come from `address` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, follow_redirects=False, timeout=30) as client:
        yield client


def _with(settings: StackSettings, *, http: dict[str, object] | None = None, **dashboard: object) -> StackSettings:
    return settings.model_copy(
        update={
            "http": settings.http.model_copy(update=http or {}),
            "dashboard": settings.dashboard.model_copy(update=dashboard),
        }
    )


async def login_over_https(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, *, scheme: str = "https"
) -> httpx.Response:
    """`login` for a client whose cookies are `Secure`, which httpx (as a browser) keeps away from an http:// URL:
    the login cookie goes back by hand. `scheme` is the one the browser sees (its Origin)."""
    form = await client.get("/login")
    match = LOGIN_TOKEN.search(form.text)
    assert match is not None, form.text
    cookie = f"mcpdash_login={form.cookies.get('mcpdash_login') or client.cookies.get('mcpdash_login')}"
    return await client.post(
        "/login",
        data={"username": username, "password": password, "login_token": match.group(1), "next": "/"},
        headers={"Origin": f"{scheme}://{client.base_url.netloc.decode()}", "Cookie": cookie},
    )


def _assert_security_headers(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, response.status_code, name)


# -- Host allow-list -------------------------------------------------------------------------------------------


async def test_a_foreign_host_is_refused_421_exactly_where_the_mcp_endpoints_refuse_it(
    dashboard_settings: StackSettings,
) -> None:
    """DNS rebinding: `Host: evil.example:8800` once got the dashboard's pages. Both now read one allow-list."""
    settings = _with(dashboard_settings, http={"allowed_hosts": ["dash.example", "ops.example:*"]})
    _, token = await issue_key(settings, ["read"])  # past authentication, the SDK checks the Host
    release = anyio.Event()
    async with (
        serve_app(create_app(settings)) as url,
        serve_app(build_peer_server(settings, release).http_app()) as mcp,
    ):
        port = url.rsplit(":", 1)[1]
        hosts = {
            "evil.example:8800": False,
            "evil.example": False,
            "127.0.0.1.evil.example:80": False,
            "localhost.evil.example:80": False,
            "dash.example:8800": False,  # listed without a port: that exact Host only
            "127.0.0.1": False,  # the SDK's loopback patterns want a port
            f"127.0.0.1:{port}": True,
            f"localhost:{port}": True,
            "[::1]:8800": True,
            "dash.example": True,
            "ops.example:443": True,
        }
        async with (
            browser_client(url) as client,
            httpx.AsyncClient(base_url=mcp, timeout=30, headers={"Authorization": f"Bearer {token}"}) as mcp_client,
        ):
            for host, allowed in hosts.items():
                page = await client.get("/login", headers={"Host": host})
                endpoint = await mcp_client.post("/mcp", json={}, headers={"Host": host})
                assert (page.status_code != 421) is allowed, (host, page.status_code)
                assert (endpoint.status_code == 421) is (page.status_code == 421), (host, endpoint.status_code)
                _assert_security_headers(page)
            for path in ("/", "/health", "/static/dashboard.js", "/api/status"):
                assert (await client.get(path, headers={"Host": "evil.example:8800"})).status_code == 421
        release.set()


# -- security headers on every response ------------------------------------------------------------------------


async def test_every_response_carries_the_security_headers_errors_included(dashboard_settings: StackSettings) -> None:
    app = create_app(dashboard_settings)

    async def crash(_: Request) -> Response:
        raise RuntimeError("a bug")  # what any unforeseen failure looks like to Starlette: its 500

    app.router.routes.append(Route("/crash-for-test", crash))
    await create_user(dashboard_settings, "alice", "admin")
    async with serve_app(app) as url, browser_client(url) as client:
        crashed = await client.get("/crash-for-test")
        assert crashed.status_code == 500
        _assert_security_headers(crashed)
        assert "a bug" not in crashed.text
        missing = await client.get("/no-such-page")
        assert missing.status_code == 404
        _assert_security_headers(missing)
        wrong_method = await client.put("/login")
        assert wrong_method.status_code == 405
        _assert_security_headers(wrong_method)
        await login(client, "alice")
        json = {"Accept": "application/json"}
        for command_id in ("0", "9223372036854775808", "99999999999999999999999", "9" * 5000):
            # Once a 500 from an int4/bigint overflow (or Python's digit limit), without security headers.
            answer = await client.get(f"/services/commands/{command_id}", headers=json)
            assert answer.status_code == 404, (command_id[:30], answer.status_code)
            assert answer.json()["error"] == "NotFound"
            _assert_security_headers(answer)
        assert (await client.get("/services/commands/9223372036854775807", headers=json)).status_code == 404


# -- forwarded headers and login limits ------------------------------------------------------------------------


async def test_rotating_x_forwarded_for_from_a_peer_that_is_no_proxy_does_not_reset_the_login_limit(
    dashboard_url: str,
) -> None:
    async with browser_client(dashboard_url) as client:
        statuses = []
        for attempt in range(BURST * ADDRESS_USERNAMES + 2):
            client.headers["X-Forwarded-For"] = f"198.51.100.{attempt}"
            statuses.append((await login(client, f"user{attempt}", "wrong")).status_code)
        # Every attempt counted against 127.0.0.1: the address budget (all usernames) ran out.
        assert statuses[: BURST * ADDRESS_USERNAMES] == [401] * (BURST * ADDRESS_USERNAMES)
        assert statuses[BURST * ADDRESS_USERNAMES :] == [429, 429]
        client.headers["X-Forwarded-For"] = "198.51.100.250"
        limited = await login(client, "alice")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        _assert_security_headers(limited)


async def test_a_stranger_hammering_a_username_does_not_lock_its_owner_out(dashboard_url: str) -> None:
    async with client_from(dashboard_url, "127.0.0.2") as stranger:
        for _ in range(BURST):
            assert (await login(stranger, "alice", "guess")).status_code == 401
        for _ in range(3):
            assert (await login(stranger, "alice", "guess")).status_code == 429
        # The right password does not help the stranger once their budget for alice is spent.
        assert (await login(stranger, "alice")).status_code == 429
    async with client_from(dashboard_url, "127.0.0.3") as owner:
        signed_in = await login(owner, "alice")
        assert signed_in.status_code == 303, signed_in.text
        assert (await owner.get("/")).status_code == 200


async def test_one_address_spraying_usernames_is_limited_over_all_of_them(dashboard_url: str) -> None:
    async with client_from(dashboard_url, "127.0.0.4") as sprayer:
        for attempt in range(BURST * ADDRESS_USERNAMES):
            name = f"user{attempt // BURST}"  # a fresh username whenever the last one's budget is spent
            assert (await login(sprayer, name, "guess")).status_code == 401, attempt
        assert (await login(sprayer, "someone-else", "guess")).status_code == 429


async def test_a_trusted_proxy_names_the_client_and_the_scheme(dashboard_settings: StackSettings) -> None:
    settings = _with(dashboard_settings, http={"trusted_proxies": ["127.0.0.0/30"]})
    await create_user(settings, "alice", "admin")
    async with serve_app(create_app(settings)) as url, browser_client(url) as proxy:
        proxy.headers["X-Forwarded-For"] = "203.0.113.5"
        for _ in range(BURST):
            assert (await login(proxy, "alice", "guess")).status_code == 401
        assert (await login(proxy, "alice")).status_code == 429
        # Another client behind the same proxy has its own budget; its https makes the cookie Secure.
        proxy.headers.update({"X-Forwarded-For": "203.0.113.6", "X-Forwarded-Proto": "https"})
        signed_in = await login_over_https(proxy, "alice")
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "; secure" in cookie and "httponly" in cookie
        # A peer outside the trusted networks is its own client, whatever it forwards.
        async with client_from(url, "127.0.0.9") as direct:
            direct.headers.update({"X-Forwarded-For": "203.0.113.6", "X-Forwarded-Proto": "https"})
            for _ in range(BURST):
                assert (await login(direct, "alice", "guess")).status_code == 401
            plain = await login(direct, "alice")
            assert plain.status_code == 429
        async with client_from(url, "127.0.0.10") as direct:
            direct.headers["X-Forwarded-Proto"] = "https"
            plain = await login(direct, "alice")
            assert plain.status_code == 303 and "; secure" not in plain.headers["set-cookie"].lower()
            assert (await direct.get("/")).status_code == 200


async def test_the_secure_cookies_setting_marks_cookies_secure_over_plain_http(
    dashboard_settings: StackSettings,
) -> None:
    settings = _with(dashboard_settings, secure_cookies=True)
    await create_user(settings, "alice", "admin")
    async with serve_app(create_app(settings)) as url, browser_client(url) as client:
        assert "; secure" in (await client.get("/login")).headers["set-cookie"].lower()
        response = await login_over_https(client, "alice", scheme="http")
        assert response.status_code == 303
        assert "; secure" in response.headers["set-cookie"].lower()
