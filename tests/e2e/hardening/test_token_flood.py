"""A flood of unique 100 KB bearer tokens leaves a real server process's resident memory where it was.

Before the verdict cache was keyed by digest and bounded, and before overlong tokens were refused unread, 400 such
requests grew one server by ~58 MB for good. Here 2,000 of them, sent by eight concurrent connections to
`mcp-stack serve ralph` as a subprocess, must leave RSS (read from /proc) within +20 MB; those that reach the app
(nearly all: the HTTP parser drops a few whose headers arrive in pieces) are answered 401 and counted `too_long`.
"""

import re
import secrets
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from tests.e2e.hardening.processes import served

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

REQUESTS = 2_000
TOKEN_BYTES = 100 * 1024
CONNECTIONS = 8
MAX_GROWTH_BYTES = 20 * 1024 * 1024
# uvicorn's h11 parser refuses a header block it cannot buffer whole (over 16 KB still incomplete): 400, or the
# connection closed while the client is still sending (0). Which requests meet it depends on TCP segmentation.
HTTP_LAYER_REFUSALS = (400, 0)
BODY = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def resident_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


async def test_unique_100_kb_tokens_do_not_grow_resident_memory(module_settings: StackSettings, tmp_path: Path) -> None:
    async with open_database(module_settings, BreakerRegistry(module_settings.breaker)) as database:
        reader = (await KeyStore(database).create("flood-metrics", ["read"])).token
    env = {"MCP_STACK_RALPH__WORKERS": "0"}
    async with served("ralph", module_settings, tmp_path / "logs", env=env) as server:
        limits = httpx.Limits(max_connections=CONNECTIONS)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            # Warm the process's allocators and code paths with ordinary authenticated traffic first.
            for _ in range(20):
                assert (await client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})).status_code == 200
            before = await anyio.to_thread.run_sync(resident_bytes, server.process.pid)
            statuses: list[int] = []

            async def flood(count: int) -> None:
                for _ in range(count):
                    # Well-formed (`mcps_<id>_<secret>`), unique per request: the shape that used to be cached.
                    secret = secrets.token_urlsafe(TOKEN_BYTES).replace("_", "-")[:TOKEN_BYTES]
                    token = f"mcps_{secrets.token_hex(6)}_{secret}"
                    headers = {**HEADERS, "Authorization": f"Bearer {token}"}
                    try:
                        statuses.append((await client.post("/mcp", json=BODY, headers=headers)).status_code)
                    except httpx.TransportError:
                        statuses.append(0)

            with anyio.fail_after(50):
                async with anyio.create_task_group() as tg:
                    for _ in range(CONNECTIONS):
                        tg.start_soon(flood, REQUESTS // CONNECTIONS)
            after = await anyio.to_thread.run_sync(resident_bytes, server.process.pid)
            metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})).text
    reached = statuses.count(401)
    assert set(statuses) <= {401, *HTTP_LAYER_REFUSALS}, set(statuses)
    assert reached >= REQUESTS * 0.9, statuses
    assert f'mcpstack_auth_failures_total{{reason="too_long",server="ralph"}} {float(reached)}' in metrics
    assert after - before <= MAX_GROWTH_BYTES, (before, after)
