"""Rate limits hold at ten times the configured rate from several concurrent clients.

Four in-process clients of one principal call `list_tasks` on an open-loop schedule at 10x the configured rate
(bench/load.py's driver). Admitted calls stay within the GCRA bound burst + rate x elapsed, the limiter still
admits (it does not shut the principal out), and every refusal is the JSON-RPC rate-limit error. The latency
comparison is a measurement and lives in bench/load.py.
"""

import contextlib
from pathlib import Path

import pytest
from mcp import Client

from bench.load import gcra_bound, offer
from mcp_servers.cli import build_server
from mcp_servers.shared.config import StackSettings

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

RATE_PER_SECOND = 20.0
BURST = 5
SECONDS = 3.0
CLIENTS = 4


async def test_rate_limit_holds_at_ten_times_the_rate_from_concurrent_clients(
    stack_settings: StackSettings, tmp_path: Path
) -> None:
    settings = stack_settings.model_copy(
        update={
            "data_dir": tmp_path / "ralph",
            "rate_limit": stack_settings.rate_limit.model_copy(
                update={"enabled": True, "calls_per_minute": RATE_PER_SECOND * 60, "burst": BURST}
            ),
            "ralph": stack_settings.ralph.model_copy(update={"workers": 0}),
        }
    )
    server = build_server("ralph", settings)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(server.mcp)) for _ in range(CLIENTS)]
        calls = [lambda c=c: c.call_tool("list_tasks", {}) for c in clients]
        run = await offer(calls, RATE_PER_SECOND * 10, SECONDS)
    assert not run.errors, run.errors[:5]
    assert run.offered == run.admitted + run.rejected
    # Upper bound: a call admitted at the very end may finish a little after the schedule: one second of slack.
    assert run.admitted <= gcra_bound(RATE_PER_SECOND, BURST, run.elapsed_seconds + 1.0), (run.admitted, run)
    assert run.admitted >= BURST + RATE_PER_SECOND * SECONDS * 0.5, run.admitted
    assert run.rejected >= run.offered * 0.5
