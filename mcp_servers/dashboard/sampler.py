"""Samples every server's `/ready` and `/metrics` on an interval; keeps the latest status and a short time series.

The series (request rate, error ratio, mean latency between two samples) lives in memory only: it is a view for
the charts, the servers' own metrics are the record.
"""

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
from prometheus_client.parser import text_string_to_metric_families

from mcp_servers.dashboard.live import Changes
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.peers import Peer
from mcp_servers.shared.resilience.breaker import BreakerRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Counters:
    """Cumulative totals read from one /metrics scrape."""

    calls: float = 0.0
    errors: float = 0.0
    duration_sum: float = 0.0
    duration_count: float = 0.0
    rate_limited: float = 0.0


@dataclass(slots=True)
class ServerStatus:
    """What the overview shows for one server."""

    name: str
    url: str
    state: str = "unknown"  # ready, not_ready, down, unauthorized, rate_limited, unknown
    version: str | None = None
    uptime_seconds: float | None = None
    checks: dict[str, str] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    calls_total: float = 0.0
    errors_total: float = 0.0
    rate_limited_total: float = 0.0
    mean_latency_seconds: float | None = None
    sampled_at: float = 0.0


def parse_counters(text: str) -> Counters:
    """Totals of the stack's tool metrics in a Prometheus text exposition."""
    calls = errors = duration_sum = duration_count = limited = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mcpstack_tool_calls_total":
                calls += sample.value
                if sample.labels.get("outcome") != "ok":
                    errors += sample.value
            elif sample.name == "mcpstack_tool_call_duration_seconds_sum":
                duration_sum += sample.value
            elif sample.name == "mcpstack_tool_call_duration_seconds_count":
                duration_count += sample.value
            elif sample.name == "mcpstack_rate_limit_rejections_total":
                limited += sample.value
    return Counters(calls, errors, duration_sum, duration_count, limited)


class Sampler:
    """Latest status and series of every server; `run()` refreshes them until cancelled."""

    def __init__(self, links: Mapping[str, Peer], breakers: BreakerRegistry, *, interval: float, history: int) -> None:
        self._links = links
        self._breakers = breakers
        self._interval = interval
        self.status = {name: ServerStatus(name, link.base_url) for name, link in links.items()}
        self._previous: dict[str, tuple[float, Counters]] = {}
        self.series: dict[str, deque[tuple[float, float, float, float | None]]] = {
            name: deque(maxlen=history) for name in links
        }
        self.changes = Changes()
        """Moves after every sample (live status streams wait on it)."""

    async def run(self) -> None:
        """Sample every interval until cancelled."""
        while True:
            await self.sample_once()
            await anyio.sleep(self._interval)

    async def sample_once(self) -> None:
        """Sample all servers concurrently, then wake every waiter."""
        async with anyio.create_task_group() as tg:
            for name in self._links:
                tg.start_soon(self._sample, name)
        self.changes.notify()

    async def _sample(self, name: str) -> None:
        link = self._links[name]
        status = self.status[name]
        now = time.time()
        status.sampled_at = now
        try:
            ready = await link.get("/ready")
        except DependencyUnavailable as exc:
            status.state, status.error = "down", str(exc)
            status.checks, status.breakers = {}, {}
            return
        if ready.status in (401, 403):
            status.state, status.error = "unauthorized", "the dashboard's service key was refused"
            return
        if ready.status == 429:
            status.state, status.error = "rate_limited", "the server's rate limit refused the dashboard"
            return
        body = ready.body if isinstance(ready.body, dict) else {}
        status.state = str(body.get("status", "not_ready" if ready.status != 200 else "ready"))
        status.error = None
        status.version = body.get("version")
        status.uptime_seconds = body.get("uptime_seconds")
        status.checks = dict(body.get("checks", {}))
        status.breakers = dict(body.get("breakers", {}))
        try:
            metrics = await link.get("/metrics")
        except DependencyUnavailable:
            return
        if metrics.status != 200:
            return
        try:
            counters = parse_counters(metrics.text)
        except ValueError:
            logger.warning("unparseable metrics", extra={"server": name})
            return
        status.calls_total, status.errors_total = counters.calls, counters.errors
        status.rate_limited_total = counters.rate_limited
        if counters.duration_count:
            status.mean_latency_seconds = counters.duration_sum / counters.duration_count
        previous = self._previous.get(name)
        self._previous[name] = (now, counters)
        if previous is None:
            return
        at, before = previous
        elapsed = max(now - at, 1e-6)
        calls = max(counters.calls - before.calls, 0.0)
        errors = max(counters.errors - before.errors, 0.0)
        count = counters.duration_count - before.duration_count
        latency = (counters.duration_sum - before.duration_sum) / count if count > 0 else None
        self.series[name].append((round(now, 3), calls / elapsed, errors / calls if calls else 0.0, latency))

    def snapshot(self) -> dict[str, Any]:
        """Everything the live pages need, as JSON-ready data."""
        return {
            "version": self.changes.version,
            "servers": {name: asdict(status) for name, status in self.status.items()},
            "dashboard_breakers": self._breakers.snapshot(),
            "series": {name: list(points) for name, points in self.series.items()},
        }
