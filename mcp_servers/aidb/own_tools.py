"""AIDB's own tools in `find_tools`: indexed at start like a registered server's, under the name `aidb`.

The entry's command is AIDB's stdio entry point, so `register_mcp_server(name="aidb")` re-indexes it like any
other server. Start-up skips the write when the stored tools already match (replicas start at the same time).
"""

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_servers.aidb import store
from mcp_servers.aidb.discovery import index_server_tools
from mcp_servers.aidb.points import TOOLS_COLLECTION, tool_point
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.port import VectorIndex

logger = logging.getLogger(__name__)

SELF_NAME = "aidb"
SELF_COMMAND = ("mcp-aidb",)


def _signature(name: str, title: str | None, description: str, schema: Mapping[str, Any]) -> str:
    return json.dumps([name, title, description, schema], sort_keys=True)


async def index_own_tools(
    database: Database, vectors: VectorIndex, embedder: Embedder, tools: Sequence[Mapping[str, Any]]
) -> int:
    """Store and index `tools` (AIDB's tool list, as MCP dicts) under `aidb`; returns how many were written
    (0 when the stored ones already match)."""
    wanted = {
        _signature(str(t["name"]), t.get("title"), str(t.get("description") or ""), dict(t.get("inputSchema") or {}))
        for t in tools
    }
    stored = [tool for tool in await store.all_tools(database) if tool.server == SELF_NAME]
    others = {tool.point_id for tool in await store.tools_embedded_by_others(database, embedder.name)}
    have = {_signature(t.name, t.title, t.description, t.input_schema) for t in stored}
    if have == wanted and not others.intersection(t.point_id for t in stored):
        # Stored and embedded by this model: make sure the index holds them (a restore may have skipped vectors).
        if stored:
            await vectors.upsert(TOOLS_COLLECTION, [tool_point(tool) for tool in stored])
        return 0
    records = await index_server_tools(database, vectors, embedder, SELF_NAME, None, SELF_COMMAND, tools)
    logger.info("own tools indexed for find_tools", extra={"tools": len(records)})
    return len(records)
