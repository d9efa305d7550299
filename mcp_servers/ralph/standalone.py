"""`mcp-stack worker ralph`: run task workers without an MCP transport (scale-out on more machines).

Workers in any number of processes share the queue in PostgreSQL; SIGINT/SIGTERM hands running tasks back
to the queue before the process exits.
"""

import functools
import logging
import signal

import anyio

from mcp_servers.ralph.deps import open_ralph
from mcp_servers.ralph.metrics import RalphMetrics
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.postgres.pool import open_database

logger = logging.getLogger(__name__)


async def run_workers(settings: StackSettings, *, concurrency: int | None = None) -> None:
    """Run this process's worker pool until SIGINT or SIGTERM."""
    if concurrency is not None:
        settings = settings.model_copy(update={"ralph": settings.ralph.model_copy(update={"workers": concurrency})})
    if settings.ralph.workers < 1:
        raise ConfigurationError("MCP_STACK_RALPH__WORKERS must be at least 1 for a worker process")
    core = build_core("ralph", settings)
    async with (
        open_database(settings, core.breakers, application_name="mcp-stack-ralph-worker") as database,
        anyio.create_task_group() as live,
    ):
        # Live settings (the command templates) reach worker processes too.
        live.start_soon(functools.partial(core.runtime.run, database, core.breakers, listen=False))
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_ralph(core, database, metrics=RalphMetrics(core.metrics.registry)) as deps:
                assert deps.workers is not None
                logger.info("ralph worker process ready", extra={"worker_id": deps.workers.worker_id})
                async for _ in signals:
                    break
        live.cancel_scope.cancel()
