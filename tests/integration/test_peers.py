"""shared/peers.py against a real StackServer over Streamable HTTP: one error mapping, a breaker that counts only
outages, clients built off the event loop."""

import contextlib
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from blockbuster import BlockingError
from pydantic import SecretStr

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import DependencyUnavailable, PeerToolError, RateLimited
from mcp_servers.shared.peers import ERA, Peer, PeerSpec, _http_client, mcp_endpoint, open_peer
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState
from tests.integration.peer_support import REFUSAL, build_peer_server
from tests.integration.test_harness import issue_key
from tests.support import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

THRESHOLD = 2


def _breakers(settings: StackSettings) -> BreakerRegistry:
    return BreakerRegistry(settings.breaker.model_copy(update={"failure_threshold": THRESHOLD, "open_seconds": 600}))


def _link(
    url: str, token: str | None, timeout: float = 10, *, breakers: BreakerRegistry | None = None, mode: str = ERA
) -> contextlib.AbstractAsyncContextManager[Peer]:
    """A link named "aidb" to the server at `url`, as a lifespan opens one."""
    spec = PeerSpec("aidb", f"{url}/mcp", SecretStr(token) if token else None, timeout, mode=mode)
    return open_peer(spec, breakers)


def _limited(settings: StackSettings, burst: int) -> StackSettings:
    limit = settings.rate_limit.model_copy(update={"calls_per_minute": 0.01, "burst": burst})
    return settings.model_copy(update={"rate_limit": limit})


@pytest.fixture
async def release() -> AsyncIterator[anyio.Event]:
    event = anyio.Event()
    yield event
    event.set()


async def test_a_tool_error_is_a_peer_tool_error_with_its_text_and_never_opens_the_breaker(
    stack_settings: StackSettings, release: anyio.Event
) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url:
        spec = PeerSpec("hybrid", mcp_endpoint(url), SecretStr(token), 10)
        async with open_peer(spec, _breakers(stack_settings)) as peer:
            assert (await peer.call_tool("echo", {"text": "hi"})).data() == {"text": "hi"}
            for _ in range(THRESHOLD + 2):
                with pytest.raises(PeerToolError) as refused:
                    await peer.call_tool("refuse", {"text": "x"})
            assert peer.breaker is not None and peer.breaker.state is BreakerState.CLOSED
    assert (refused.value.peer, refused.value.tool) == ("hybrid", "refuse")
    assert REFUSAL in refused.value.text and REFUSAL in str(refused.value)


async def test_arguments_the_peer_refuses_are_a_peer_tool_error_with_its_message_and_never_open_the_breaker(
    stack_settings: StackSettings, release: anyio.Event
) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url, _link(url, token, breakers=_breakers(stack_settings)) as peer:
        for _ in range(THRESHOLD + 2):
            # JSON allows a NUL in a string; the peer refuses it with JSON-RPC -32602 (invalid params).
            with pytest.raises(PeerToolError) as refused:
                await peer.call_tool("echo", {"text": "a\x00b"})
        assert peer.breaker is not None and peer.breaker.state is BreakerState.CLOSED
        assert (await peer.call_tool("echo", {"text": "fine"})).data() == {"text": "fine"}
    assert (refused.value.peer, refused.value.tool) == ("aidb", "echo")
    assert "NUL" in refused.value.text


async def test_a_rate_limit_refusal_is_rate_limited_with_the_peers_wait_and_never_opens_the_breaker(
    stack_settings: StackSettings, release: anyio.Event
) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(_limited(stack_settings, burst=1), release)
    async with serve_app(server.http_app()) as url, _link(url, token, breakers=_breakers(stack_settings)) as peer:
        await peer.call_tool("echo", {"text": "first"})
        for _ in range(THRESHOLD + 2):
            with pytest.raises(RateLimited) as limited:
                await peer.call_tool("echo", {"text": "again"})
        assert peer.breaker is not None and peer.breaker.state is BreakerState.CLOSED
    # One call per 100 minutes: the peer's own figure comes through, not a default.
    assert limited.value.retry_after_seconds > 60


async def test_a_refused_connection_opens_the_breaker_and_then_no_call_is_made(stack_settings: StackSettings) -> None:
    spec = PeerSpec("ralph", f"http://127.0.0.1:{free_port()}/mcp", None, 5)
    async with open_peer(spec, _breakers(stack_settings)) as peer:
        for _ in range(THRESHOLD):
            with pytest.raises(DependencyUnavailable) as down:
                await peer.call_tool("echo", {"text": "x"})
            assert "circuit open" not in str(down.value)
        assert peer.breaker is not None and peer.breaker.state is BreakerState.OPEN
        with pytest.raises(DependencyUnavailable) as short_circuited:
            await peer.call_tool("echo", {"text": "x"})
        with pytest.raises(DependencyUnavailable):
            await peer.get("/health")
    assert "circuit open" in str(short_circuited.value)


async def test_a_timeout_is_an_outage_that_opens_the_breaker(
    stack_settings: StackSettings, release: anyio.Event
) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url, _link(url, token, 0.3, breakers=_breakers(stack_settings)) as peer:
        for _ in range(THRESHOLD):
            with anyio.fail_after(10), pytest.raises(DependencyUnavailable) as slow:
                await peer.call_tool("hang", {})
            assert "timed out" in str(slow.value)
        assert peer.breaker is not None and peer.breaker.state is BreakerState.OPEN
        release.set()


async def test_plain_http_gets_go_beside_the_mcp_endpoint_and_any_status_is_an_answer(
    stack_settings: StackSettings, release: anyio.Event
) -> None:
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url, _link(url, None, breakers=_breakers(stack_settings)) as peer:
        health = await peer.get("/health")
        for _ in range(THRESHOLD + 1):
            assert (await peer.get("/ready")).status == 401
        assert peer.breaker is not None and peer.breaker.state is BreakerState.CLOSED
    assert peer.base_url == url
    assert health.status == 200 and health.body["status"] == "ok"


async def test_listing_tools_follows_pages_up_to_the_limit(stack_settings: StackSettings, release: anyio.Event) -> None:
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url, _link(url, token, mode="auto") as peer:
        every = await peer.list_tools(max_tools=100)
        first = await peer.list_tools(max_tools=1)
    assert {tool["name"] for tool in every} == {"echo", "search", "refuse", "route_query", "hang"}
    assert len(first) == 1 and "inputSchema" in first[0]


async def test_the_peer_http_client_is_built_off_the_event_loop(
    stack_settings: StackSettings, release: anyio.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What building a link first does in a process (the SDK's lazy jsonschema import lists directories): forget
    # the import for this test, so the order tests run in does not hide it.
    for name in [name for name in sys.modules if name.split(".")[0] in ("jsonschema", "jsonschema_specifications")]:
        monkeypatch.delitem(sys.modules, name)
    # The suite's BlockBuster fixture is active: that work done here, on the event loop, is a blocking call ...
    spec = PeerSpec("aidb", "http://127.0.0.1:9/mcp", None, 5)
    with pytest.raises(BlockingError):
        _http_client(spec)
    # ... which open_peer does on a worker thread, so a whole call passes under the same fixture.
    _, token = await issue_key(stack_settings, ["read"])
    server = build_peer_server(stack_settings, release)
    async with serve_app(server.http_app()) as url, _link(url, token) as peer:
        assert isinstance(peer, Peer)
        assert (await peer.call_tool("echo", {"text": "ok"})).structured == {"text": "ok"}
