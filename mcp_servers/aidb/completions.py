"""Argument completions of AIDB's prompt and resource template (`completion/complete`), by typed prefix.

Project names for `answer_with_sources(project=...)` and document ids for `aidb://documents/{document_id}`,
straight from the store. Who may ask is the harness's concern (the `read` scope on AIDB).
"""

from mcp_servers.aidb import store
from mcp_servers.shared.completions import uuid_prefix_range
from mcp_servers.shared.postgres.pool import Database


async def project_names(database: Database, prefix: str, limit: int) -> list[str]:
    """Projects whose name starts with `prefix`, by name."""
    return await store.project_names(database, prefix, limit)


async def document_ids(database: Database, prefix: str, limit: int) -> list[str]:
    """Stored document ids that start with `prefix` (hex digits, dashes ignored), in id order."""
    bounds = uuid_prefix_range(prefix)
    return [] if bounds is None else await store.document_ids_between(database, *bounds, limit)
