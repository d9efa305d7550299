"""`ingest_path` and `reindex` as MCP tasks (`io.modelcontextprotocol/tasks`), when the client asks for them.

The tool call itself runs in the background, in the task store AIDB's lifespan owns (deps.py), exactly as it would
synchronously; its progress messages become the task's `statusMessage` and its result (IngestResult or
ReindexResult) is inlined by `tasks/get` once `completed`. `tasks/cancel` cancels the work at its next await: an
ingest keeps the batches it already committed (each batch of files is its own transaction) and stores no more; a
reindex leaves the index partly rebuilt (run it again). Records are in memory: bounded by
`aidb.mcp_task_ttl_seconds` after a task ends and `aidb.mcp_tasks_per_principal` unfinished ones per caller, seen
only by the principal that started them, and lost (their work cancelled) when the process stops.
"""

from typing import Any

from mcp_servers.shared.config import AidbSettings
from mcp_servers.shared.mcp_tasks import TasksExtension
from mcp_servers.shared.memory_tasks import MemoryTaskBackend, MemoryTaskStore

TASK_TOOLS = frozenset({"ingest_path", "reindex"})
POLL_INTERVAL_SECONDS = 1.0


def _store(deps: Any) -> MemoryTaskStore:
    store: MemoryTaskStore = deps.tasks
    return store


def tasks_extension(settings: AidbSettings) -> TasksExtension:
    """The tasks extension over AIDB's task-supporting tools."""
    backend = MemoryTaskBackend(
        TASK_TOOLS,
        ttl_seconds=settings.mcp_task_ttl_seconds,
        store_of=_store,
        poll_interval_seconds=POLL_INTERVAL_SECONDS,
    )
    return TasksExtension(backend, max_active_per_principal=settings.mcp_tasks_per_principal)
