"""Bounded under abuse, over real HTTP: per-method rate limits, the per-principal session cap, overlong tokens
refused unread, and every refused credential counted in `mcpstack_auth_failures_total`."""

import contextlib
import re
from collections.abc import Sequence

import anyio
import httpx
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.auth.verifier import MAX_TOKEN_CHARS
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.middleware.mcp import RATE_LIMITED
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.resilience.ratelimit import KeyRate
from tests.integration.test_harness import build_echo_server, issue_key
from tests.support import http_client, serve_app, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def limited(settings: StackSettings, burst: int) -> StackSettings:
    rate_limit = settings.rate_limit.model_copy(update={"calls_per_minute": 1.0, "burst": burst})
    return settings.model_copy(update={"rate_limit": rate_limit})


async def issue_key_with_rate(settings: StackSettings, scopes: Sequence[str], rate: KeyRate) -> str:
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        return (await KeyStore(database).create("bulk", scopes, rate=rate)).token


def with_http(settings: StackSettings, **update: int) -> StackSettings:
    return settings.model_copy(update={"http": settings.http.model_copy(update=update)})


def counter(metrics: str, reason: str) -> float:
    match = re.search(rf'mcpstack_auth_failures_total{{reason="{reason}",server="aidb"}} ([0-9.]+)', metrics)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_resource_reads_and_prompt_gets_are_rate_limited_per_principal_and_method(
    stack_settings: StackSettings, mode: str
) -> None:
    settings = limited(stack_settings, burst=3)
    _, token = await issue_key(settings, ["read"])
    _, other = await issue_key(settings, ["read"])
    server = build_echo_server(settings)

    @server.resource("echo://fixed", name="fixed", description="a fixed resource")
    async def fixed() -> str:
        return "{}"

    async with serve_app(server.http_app()) as url:
        async with http_client(url, token, mode=mode) as client:
            for _ in range(3):
                await client.read_resource("echo://fixed")
                await client.get_prompt("greet", {"name": "x"})
            with pytest.raises(MCPError) as read_limited:
                await client.read_resource("echo://fixed")
            with pytest.raises(MCPError) as prompt_limited:
                await client.get_prompt("greet", {"name": "x"})
            # Another method's budget is its own.
            assert not (await client.call_tool("echo", {"text": "x"})).is_error
        async with http_client(url, other, mode=mode) as client:
            # So is another principal's.
            await client.read_resource("echo://fixed")
    for refused in (read_limited.value, prompt_limited.value):
        assert refused.code == RATE_LIMITED
        assert refused.data["retry_after_seconds"] > 0


async def test_one_key_cannot_hold_more_than_its_session_cap_and_others_still_get_in(
    stack_settings: StackSettings,
) -> None:
    settings = with_http(stack_settings, max_sessions_per_principal=2)
    _, hog = await issue_key(settings, ["read"])
    _, other = await issue_key(settings, ["read"])
    async with serve_app(build_echo_server(settings).http_app()) as url, httpx.AsyncClient() as raw:

        async def open_session(token: str) -> httpx.Response:
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
            return await raw.post(f"{url}/mcp", json=INITIALIZE, headers=headers)

        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(http_client(url, hog))
            refused = await open_session(hog)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == RATE_LIMITED
            async with http_client(url, other) as client:
                assert not (await client.call_tool("echo", {"text": "x"})).is_error
            # The stateless era opens no session: the capped key still works there.
            async with http_client(url, hog, mode="2026-07-28") as client:
                assert not (await client.call_tool("echo", {"text": "x"})).is_error
        # Closing its sessions (the client DELETEs them) gives the key its room back.

        async def admitted() -> bool:
            response = await open_session(hog)
            return response.status_code == 200

        await wait_until(admitted, timeout=10)


async def test_opening_sessions_is_rate_limited_with_429_and_retry_after(stack_settings: StackSettings) -> None:
    settings = limited(stack_settings, burst=2)
    _, token = await issue_key(settings, ["read"])
    async with serve_app(build_echo_server(settings).http_app()) as url, httpx.AsyncClient() as raw:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        statuses = [(await raw.post(f"{url}/mcp", json=INITIALIZE, headers=headers)).status_code for _ in range(2)]
        refused = await raw.post(f"{url}/mcp", json=INITIALIZE, headers=headers)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["data"]["retry_after_seconds"] > 0


async def test_an_overlong_token_is_refused_unread_and_every_refusal_is_counted(
    stack_settings: StackSettings,
) -> None:
    key_id, revoked = await issue_key(stack_settings, ["read"])
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as database:
        await KeyStore(database).revoke(key_id)
    _, reader = await issue_key(stack_settings, ["read"])
    server = build_echo_server(stack_settings)
    async with serve_app(server.http_app()) as url, httpx.AsyncClient() as raw:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}

        async def post(token: str | None) -> httpx.Response:
            auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
            return await raw.post(f"{url}/mcp", json=body, headers={**MCP_HEADERS, **auth})

        overlong = ["mcps_" + "a" * 12 + "_" + "b" * (MAX_TOKEN_CHARS + i) for i in range(3)] + ["x" * 100_000]
        for token in overlong:
            response = await post(token)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        # Refused before any work: nothing was hashed into the verdict cache.
        assert len(server.verifier.cache) == 0
        assert (await post(None)).status_code == 401
        assert (await post("mcps_000000000000_wrongsecret")).status_code == 401
        assert (await post(revoked)).status_code == 401
        assert (await post(revoked)).status_code == 401  # a cached refusal is still a refusal
        async with http_client(url, reader) as client:
            await client.list_tools()
        metrics = (await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {reader}"})).text
    assert counter(metrics, "too_long") == len(overlong)
    assert counter(metrics, "missing") == 1
    assert counter(metrics, "invalid") == 1
    assert counter(metrics, "revoked") == 2


async def test_open_sse_streams_count_against_the_session_cap(stack_settings: StackSettings) -> None:
    settings = with_http(stack_settings, max_sessions_per_principal=1)
    _, token = await issue_key(settings, ["read"])
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        serve_app(build_echo_server(settings).http_app()) as url,
        httpx.AsyncClient(timeout=30) as raw,
        Client(sse_client(f"{url}/sse", headers=auth), mode="legacy") as client,
    ):
        assert not (await client.call_tool("echo", {"text": "x"})).is_error
        async with raw.stream("GET", f"{url}/sse", headers=auth) as second:
            assert second.status_code == 429
        assert (await raw.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **auth})).status_code == 429


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_key_with_its_own_rate_is_not_throttled_where_a_default_key_is(
    stack_settings: StackSettings, mode: str
) -> None:
    settings = limited(stack_settings, burst=3)
    _, default = await issue_key(settings, ["read"])
    bulk = await issue_key_with_rate(settings, ["read"], KeyRate(calls_per_minute=6000.0, burst=100))
    calls = 12
    async with serve_app(build_echo_server(settings).http_app()) as url, httpx.AsyncClient() as raw:
        async with http_client(url, default, mode=mode) as client:
            for _ in range(3):
                assert not (await client.call_tool("echo", {"text": "x"})).is_error
            with pytest.raises(MCPError) as throttled:
                await client.call_tool("echo", {"text": "x"})
        async with http_client(url, bulk, mode=mode) as client:
            for _ in range(calls):
                assert not (await client.call_tool("echo", {"text": "x"})).is_error
            for _ in range(calls):
                await client.list_tools()  # per-method budgets follow the key's rate too
        # So do the bearer-protected routes.
        statuses = {
            name: [
                (await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})).status_code
                for _ in range(5)
            ]
            for name, token in (("default", default), ("bulk", bulk))
        }
    assert throttled.value.code == RATE_LIMITED
    assert throttled.value.data["retry_after_seconds"] > 0
    assert statuses == {"default": [200, 200, 200, 429, 429], "bulk": [200] * 5}


async def test_a_refused_call_is_admitted_after_waiting_the_time_it_was_told(stack_settings: StackSettings) -> None:
    settings = limited(stack_settings, burst=3)
    token = await issue_key_with_rate(settings, ["read"], KeyRate(calls_per_minute=600.0, burst=2))
    async with serve_app(build_echo_server(settings).http_app()) as url, http_client(url, token) as client:
        for _ in range(3):
            # Spend the key's budget: one call refills in 100 ms, so calls are refused once a few land together.
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.call_tool("echo", {"text": "x"})
                    except MCPError as exc:
                        refused = exc
                        break
            assert refused.code == RATE_LIMITED
            wait = refused.data["retry_after_seconds"]
            assert 0 < wait <= 0.1
            assert wait == round(wait, 3)
            assert re.fullmatch(r"rate limit exceeded; retry in [1-9][0-9]* s", refused.message)
            await anyio.sleep(wait)
            assert not (await client.call_tool("echo", {"text": "x"})).is_error
