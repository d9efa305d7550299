"""Ralph's dependencies, opened once per process by the harness lifespan, and the background work it owns.

The lifespan runs the worker pool (unless `ralph.workers` is 0) and the notification relay as background tasks;
leaving the lifespan cancels them, which hands running tasks back to the queue.
"""

import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from mcp_servers.ralph.backends.hybrid import HybridBackend
from mcp_servers.ralph.backends.port import Backend
from mcp_servers.ralph.backends.registry import BackendRegistry
from mcp_servers.ralph.events import TaskEvents
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.ralph.notify import TaskChanges
from mcp_servers.ralph.pool import WorkerPool
from mcp_servers.ralph.queue import TaskQueue
from mcp_servers.ralph.sandbox import Sandbox, log_mode
from mcp_servers.ralph.store import TaskStore
from mcp_servers.shared.background import background_tasks
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import Core, ReadinessCheck
from mcp_servers.shared.peers import PeerSpec, mcp_endpoint, open_peer
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.subscriptions import ResourceFanout


@dataclass(frozen=True, slots=True)
class RalphDeps:
    """What Ralph's tools use; owned by the lifespan that created it."""

    settings: StackSettings
    store: TaskStore
    backends: BackendRegistry
    events: TaskEvents
    workers: WorkerPool | None
    # Wakes code waiting on one task; live while the lifespan relays notifications (a server process).
    changes: TaskChanges
    # Confines every command this process runs (agent templates, hooks, verify commands, git).
    sandbox: Sandbox

    def wake_workers(self) -> None:
        """Let this process's workers claim new work now rather than at their next poll."""
        if self.workers is not None:
            self.workers.wake()

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        return {}


@contextlib.asynccontextmanager
async def open_downstreams(core: Core) -> AsyncIterator[dict[str, Backend]]:
    """The hybrid backend when Hybrid is configured (AIDB context when AIDB is too); closes their HTTP clients."""
    ralph = core.settings.ralph
    if ralph.hybrid_url is None:
        yield {}
        return
    async with contextlib.AsyncExitStack() as stack:
        hybrid = await stack.enter_async_context(
            open_peer(
                PeerSpec(
                    "hybrid",
                    mcp_endpoint(ralph.hybrid_url),
                    ralph.hybrid_api_key,
                    ralph.mcp_timeout_seconds,
                    max_connections=32,
                ),
                core.breakers,
            )
        )
        aidb = None
        if ralph.aidb_url is not None:
            aidb = await stack.enter_async_context(
                open_peer(
                    PeerSpec("aidb", mcp_endpoint(ralph.aidb_url), ralph.aidb_api_key, ralph.mcp_timeout_seconds),
                    core.breakers,
                )
            )
        yield {"hybrid": HybridBackend(hybrid, aidb, ralph)}


@contextlib.asynccontextmanager
async def open_ralph(
    core: Core,
    database: Database,
    *,
    metrics: RalphMetrics,
    fanout: ResourceFanout | None = None,
    run_workers: bool = True,
) -> AsyncIterator[RalphDeps]:
    """Build the store and backends; run the workers and the notification relay for the block's lifetime.

    Args:
        metrics: registered once per process by the caller (the lifespan may be entered more than once).
        fanout: given by a server that serves tools; then the notification relay runs (resource updates, and the
            wake-ups `stop_task` waits on). A worker-only process passes none and holds no LISTEN connection.
    """
    settings = core.settings
    async with open_downstreams(core) as remote:
        await log_mode(settings.ralph)
        sandbox = Sandbox(settings.ralph)
        runtime = core.runtime
        backends = BackendRegistry(remote, sandbox=sandbox, live=lambda: runtime.effective.ralph)
        store = TaskStore(database)
        events = TaskEvents(core.telemetry)
        workers = None
        async with background_tasks("ralph") as background:
            if run_workers and settings.ralph.workers > 0:
                workers = WorkerPool(
                    queue=TaskQueue(database),
                    backends=backends,
                    settings=settings,
                    events=events,
                    sandbox=sandbox,
                    metrics=metrics,
                )
                background.start("workers", workers.run)
            changes = TaskChanges(fanout)
            if fanout is not None:
                background.start("notifications", functools.partial(changes.listen, database))
            yield RalphDeps(settings, store, backends, events, workers, changes, sandbox)
