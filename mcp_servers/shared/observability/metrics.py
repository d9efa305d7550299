"""Prometheus metrics of one server, on a registry the app owns (tests build several servers per process)."""

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mcp_servers.shared.resilience.breaker import BreakerState

__all__ = ["CONTENT_TYPE_LATEST", "StackMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class StackMetrics:
    """The metrics every server exports; servers may register their own on `registry`."""

    def __init__(self, server: str, version: str) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=True)
        self.tool_calls = Counter(
            "mcpstack_tool_calls_total",
            "MCP tool calls by outcome",
            ["server", "tool", "outcome"],
            registry=self.registry,
        )
        self.tool_duration = Histogram(
            "mcpstack_tool_call_duration_seconds",
            "MCP tool call latency",
            ["server", "tool"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limit_rejections = Counter(
            "mcpstack_rate_limit_rejections_total",
            "Calls refused by the rate limiter",
            ["server", "tool"],
            registry=self.registry,
        )
        self.breaker_state = Enum(
            "mcpstack_breaker_state",
            "Circuit breaker state per dependency",
            ["dependency"],
            states=[state.value for state in BreakerState],
            registry=self.registry,
        )
        self.outbound_duration = Histogram(
            "mcpstack_outbound_request_duration_seconds",
            "Latency of calls to dependencies",
            ["dependency", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.db_pool_connections = Gauge(
            "mcpstack_db_pool_connections",
            "PostgreSQL pool connections by state",
            ["state"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "mcpstack_auth_failures_total",
            "Requests refused for missing or bad credentials",
            ["server", "reason"],
            registry=self.registry,
        )
        # Set by the process that runs Hybrid's learning pipeline (unset elsewhere); alerted on in
        # containers/prometheus/alerts.yml.
        self.learning_backlog = Gauge(
            "mcpstack_learning_backlog_bytes",
            "Telemetry bytes the learning pipeline has not consumed yet",
            registry=self.registry,
        )
        build = Info("mcpstack_build", "Stack version", registry=self.registry)
        build.info({"version": version, "server": server})

    def record_breaker(self, dependency: str, state: BreakerState) -> None:
        self.breaker_state.labels(dependency=dependency).state(state.value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
