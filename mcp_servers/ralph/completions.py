"""Argument completions of Ralph's resource templates (`completion/complete`): task ids by typed prefix."""

from mcp_servers.ralph.store import TaskStore
from mcp_servers.shared.completions import uuid_prefix_range


async def task_ids(store: TaskStore, prefix: str, limit: int) -> list[str]:
    """Stored task ids that start with `prefix` (hex digits, dashes ignored), in id order."""
    bounds = uuid_prefix_range(prefix)
    return [] if bounds is None else await store.ids_between(*bounds, limit)
