"""Ralph's Prometheus metrics, registered on the server's own registry (exported at /metrics)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Iterations run from milliseconds (instant backends) to many minutes (CLI agents).
_ITERATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


class RalphMetrics:
    """Iterations by outcome and duration, finished tasks, running tasks, holding back under backpressure."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.iterations = Counter(
            "mcpstack_ralph_iterations_total",
            "Iterations run by this process, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.iteration_duration = Histogram(
            "mcpstack_ralph_iteration_duration_seconds",
            "Time inside an iteration (hooks, backend, completion check)",
            buckets=_ITERATION_BUCKETS,
            registry=registry,
        )
        self.tasks_finished = Counter(
            "mcpstack_ralph_tasks_finished_total",
            "Tasks ended by this process's workers, by final status",
            ["status"],
            registry=registry,
        )
        self.running_tasks = Gauge(
            "mcpstack_ralph_running_tasks", "Tasks this process's workers hold right now", registry=registry
        )
        self.backpressure = Gauge(
            "mcpstack_ralph_backpressure",
            "1 while this process's workers hold back new tasks and iterations (telemetry backpressure)",
            registry=registry,
        )
        self.backpressure_wait = Counter(
            "mcpstack_ralph_backpressure_wait_seconds_total",
            "Time workers spent waiting for telemetry backpressure to clear",
            registry=registry,
        )
