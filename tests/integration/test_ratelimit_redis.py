"""RedisRateLimiter against the real Redis on 127.0.0.1:6379: one budget shared by instances and processes."""

import contextlib
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import redis
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo

from mcp_servers.shared.config import BreakerSettings, RateLimitSettings
from mcp_servers.shared.errors import RateLimited, retry_after_milliseconds
from mcp_servers.shared.resilience.breaker import BreakerState, CircuitBreaker
from mcp_servers.shared.resilience.ratelimit import KEY_PREFIX, KeyRate, RedisRateLimiter

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("MCP_STACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Far below one call per test run: budgets do not refill while a test counts them.
NO_REFILL = 0.001

# One process of the shared-budget test: waits for "go" on stdin, then prints "<admitted> <fallbacks>".
CHILD = """
import sys
import anyio
from mcp_servers.shared.config import BreakerSettings, RateLimitSettings
from mcp_servers.shared.errors import RateLimited
from mcp_servers.shared.resilience.breaker import CircuitBreaker
from mcp_servers.shared.resilience.ratelimit import RedisRateLimiter

async def main(url, prefix, burst, calls):
    settings = RateLimitSettings(calls_per_minute=0.001, burst=burst)
    limiter = RedisRateLimiter.from_url(url, settings, CircuitBreaker("redis", BreakerSettings()), key_prefix=prefix)
    admitted = 0
    for _ in range(calls):
        try:
            await limiter.acquire("shared")
        except RateLimited:
            continue
        admitted += 1
    await limiter.aclose()
    print(admitted, limiter.store_unavailable_total, flush=True)

print("ready", flush=True)
sys.stdin.readline()
anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
"""


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"{KEY_PREFIX}test-{uuid.uuid4().hex}:"
    yield prefix

    async def clean() -> None:
        client = Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    anyio.run(clean)


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}; start it or set MCP_STACK_TEST_REDIS_URL")
    yield client
    await client.aclose()


def make_limiter(
    key_prefix: str,
    *,
    calls_per_minute: float = NO_REFILL,
    burst: int = 5,
    url: str = REDIS_URL,
    breaker: CircuitBreaker | None = None,
) -> RedisRateLimiter:
    breaker = breaker or CircuitBreaker("redis", BreakerSettings())
    settings = RateLimitSettings(calls_per_minute=calls_per_minute, burst=burst)
    return RedisRateLimiter.from_url(url, settings, breaker, key_prefix=key_prefix)


async def admitted(limiter: RedisRateLimiter, key: str, calls: int, rate: KeyRate | None = None) -> int:
    count = 0
    for _ in range(calls):
        try:
            await limiter.acquire(key, rate)
        except RateLimited:
            continue
        count += 1
    return count


@pytest.mark.anyio
async def test_two_limiters_share_one_budget(key_prefix: str, redis_client: Redis) -> None:
    first, second = make_limiter(key_prefix, burst=5), make_limiter(key_prefix, burst=5)
    try:
        assert await admitted(first, "aidb:alice:search", 3) == 3
        assert await admitted(second, "aidb:alice:search", 3) == 2
        with pytest.raises(RateLimited) as caught:
            await first.acquire("aidb:alice:search")
        assert caught.value.limit_key == "aidb:alice:search"
        assert caught.value.retry_after_seconds > 0
        # Another key has its own budget.
        assert await admitted(second, "aidb:bob:search", 6) == 5
        assert first.store_unavailable_total == second.store_unavailable_total == 0
        assert await redis_client.exists(key_prefix + "aidb:alice:search") == 1
    finally:
        await first.aclose()
        await second.aclose()


def test_two_processes_share_one_budget(key_prefix: str) -> None:
    burst, calls = 25, 40
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, REDIS_URL, key_prefix, str(burst), str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        # Both are started and waiting: release them together so their calls interleave.
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate(timeout=60)[0].split() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0]
    assert sum(int(admitted) for admitted, _ in results) == burst
    assert [int(fallbacks) for _, fallbacks in results] == [0, 0]


@pytest.mark.anyio
async def test_budget_refills_on_redis_time(key_prefix: str) -> None:
    limiter = make_limiter(key_prefix, calls_per_minute=60.0, burst=1)
    try:
        await limiter.acquire("k")
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire("k")
        assert 0 < caught.value.retry_after_seconds <= 1.0
        with anyio.fail_after(5):
            while True:
                try:
                    await limiter.acquire("k")
                    break
                except RateLimited as exc:
                    await anyio.sleep(exc.retry_after_seconds)
    finally:
        await limiter.aclose()


@pytest.mark.anyio
async def test_bucket_expires_once_drained(key_prefix: str, redis_client: Redis) -> None:
    limiter = make_limiter(key_prefix, calls_per_minute=60.0, burst=10)
    try:
        assert await admitted(limiter, "k", 3) == 3
        ttl_ms = await redis_client.pttl(key_prefix + "k")
        # Three calls drain in three seconds at one per second; one second of slack.
        assert 0 < ttl_ms <= 4000
    finally:
        await limiter.aclose()


@pytest.mark.anyio
async def test_update_takes_effect_on_the_shared_budget(key_prefix: str) -> None:
    limiter = make_limiter(key_prefix, burst=2)
    other = make_limiter(key_prefix, burst=2)
    try:
        assert await admitted(limiter, "k", 3) == 2
        limiter.update(NO_REFILL, 4)
        other.update(NO_REFILL, 4)
        assert await admitted(other, "k", 1) == 1
        assert await admitted(limiter, "k", 3) == 1
    finally:
        await limiter.aclose()
        await other.aclose()


@pytest.mark.anyio
async def test_a_key_rate_is_applied_in_the_script_and_shared_by_every_limiter(
    key_prefix: str, redis_client: Redis
) -> None:
    first, second = make_limiter(key_prefix, burst=2), make_limiter(key_prefix, burst=2)
    bulk = KeyRate(calls_per_minute=NO_REFILL, burst=40)
    try:
        assert await admitted(first, "aidb:bulk:search", 25, bulk) == 25
        assert await admitted(second, "aidb:bulk:search", 25, bulk) == 15
        assert await admitted(first, "aidb:default:search", 5) == 2
        # One Redis key per principal and tool, whatever its rate.
        stored = sorted([key async for key in redis_client.scan_iter(match=key_prefix + "*")])
        assert stored == [f"{key_prefix}aidb:bulk:search".encode(), f"{key_prefix}aidb:default:search".encode()]
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.anyio
async def test_waiting_the_reported_time_admits_a_fast_key_on_redis_time(key_prefix: str) -> None:
    limiter = make_limiter(key_prefix, burst=1)
    fast = KeyRate(calls_per_minute=6000.0, burst=1)  # one call refills in 10 ms
    try:
        for _ in range(10):
            # Spend the budget: calls are refused once two land within one refill of each other.
            with anyio.fail_after(10):
                while True:
                    try:
                        await limiter.acquire("fast", fast)
                    except RateLimited as exc:
                        refused = exc
                        break
            assert 0 < refused.retry_after_seconds <= 0.01 + 1e-9
            assert str(refused).endswith("retry in 1 s")
            # What a client reads in the error's data (whole milliseconds, rounded up): waiting that long admits.
            await anyio.sleep(retry_after_milliseconds(refused.retry_after_seconds))
            await limiter.acquire("fast", fast)
    finally:
        await limiter.aclose()


@pytest.mark.anyio
async def test_unreachable_redis_falls_back_with_the_key_rate() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        limiter = make_limiter(f"{KEY_PREFIX}unreachable:", burst=3, url=url)
        assert await admitted(limiter, "bulk", 30, KeyRate(burst=20)) == 20
        assert await admitted(limiter, "default", 30) == 3
        await limiter.aclose()
    assert limiter.degraded


@pytest.mark.anyio
async def test_unreachable_redis_fails_open_to_per_process_limits(caplog: pytest.LogCaptureFixture) -> None:
    # A bound socket that never listens: connections are refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        breaker = CircuitBreaker("redis", BreakerSettings(failure_threshold=2))
        limiter = make_limiter(f"{KEY_PREFIX}unreachable:", burst=3, url=url, breaker=breaker)
        with caplog.at_level(logging.WARNING, logger="mcp_servers.shared.resilience.ratelimit"):
            assert await admitted(limiter, "k", 5) == 3
        await limiter.aclose()
    assert limiter.degraded
    assert limiter.store_unavailable_total == 5
    # Two refused connections opened the breaker; the later calls did not try Redis at all.
    assert breaker.state is BreakerState.OPEN
    warnings = [record for record in caplog.records if record.name == "mcp_servers.shared.resilience.ratelimit"]
    assert len(warnings) == 1


class _RedisRelay:
    """A loopback TCP relay to Redis that the test cuts and restores, so Redis goes away for the limiter's client
    alone and deterministically (redis-py notices a server-side CLIENT KILL and reconnects before the next command).
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.port = 0
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()

    async def start(self, tg: TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self.port = listener.extra(SocketAttribute.local_port)
        self._scope, self._stopped = anyio.CancelScope(), anyio.Event()
        scope, stopped = self._scope, self._stopped

        async def pipe(source: ByteStream, sink: ByteStream) -> None:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in source:
                    await sink.send(chunk)
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await sink.aclose()

        async def handle(client: SocketStream) -> None:
            upstream = await anyio.connect_tcp("127.0.0.1", self._target_port)
            async with client, upstream, anyio.create_task_group() as pipes:
                pipes.start_soon(pipe, client, upstream)
                pipes.start_soon(pipe, upstream, client)

        async def serve() -> None:
            try:
                with scope:
                    async with listener:
                        await listener.serve(handle)
            finally:
                stopped.set()

        tg.start_soon(serve)

    async def cut(self) -> None:
        """Close the listener and every relayed connection; returns once they are closed."""
        self._scope.cancel()
        with anyio.fail_after(5):
            await self._stopped.wait()


@pytest.mark.anyio
async def test_limiter_recovers_when_redis_answers_again(key_prefix: str, redis_client: Redis) -> None:
    target_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with anyio.create_task_group() as tg:
        relay = _RedisRelay(target_port)
        await relay.start(tg)
        # The limiter's own client, through the relay and without retries, so the outage is one failed call.
        client = Redis.from_url(
            f"redis://127.0.0.1:{relay.port}/0",
            retry=Retry(NoBackoff(), 0),
            driver_info=DriverInfo(lib_version=redis.__version__),
        )
        breaker = CircuitBreaker("redis", BreakerSettings(failure_threshold=5))
        limiter = RedisRateLimiter(
            client, RateLimitSettings(calls_per_minute=NO_REFILL, burst=10), breaker, key_prefix=key_prefix
        )
        try:
            assert await admitted(limiter, "k", 1) == 1
            await relay.cut()
            await limiter.acquire("k")
            assert limiter.degraded
            assert limiter.store_unavailable_total == 1
            await relay.start(tg)  # the same port: Redis answers again
            await limiter.acquire("k")
            assert not limiter.degraded
            assert limiter.store_unavailable_total == 1
            # The shared budget saw the first and third calls only; the second was decided in process.
            assert await redis_client.hget(key_prefix + "k", "level") is not None
            assert await admitted(limiter, "k", 10) == 8
        finally:
            await client.aclose()
            await relay.cut()
