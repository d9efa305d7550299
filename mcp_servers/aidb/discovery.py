"""Tool discovery: index the tools of other MCP servers and find the best ones for a task.

`register_server` connects through `shared.peers` (Streamable HTTP URL or a stdio command), lists the tools, embeds
"name, title, description" of each and stores them in PostgreSQL and the tools collection. Registering a name
again re-indexes it. `find_tools` runs a hybrid search over every registered server's tools.
"""

import logging
import shlex
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr

from mcp_servers.aidb import store
from mcp_servers.aidb.inputs import check_query
from mcp_servers.aidb.models import FindToolsResult, RegisteredServer, ToolMatch
from mcp_servers.aidb.points import TOOLS_COLLECTION, tool_filters, tool_point, tool_point_id, tool_text
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import InvalidRequest, NotFound
from mcp_servers.shared.peers import PeerSpec, list_stdio_tools, open_peer
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.bm25 import query_vector
from mcp_servers.shared.vectors.port import SearchMode, VectorIndex

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0
MAX_TOOLS = 1000


async def list_server_tools(
    url: str | None, command: Sequence[str] | None, name: str, *, bearer: str | None = None
) -> list[dict[str, Any]]:
    """Every tool the server lists (all pages), as plain dicts.

    Raises:
        DependencyUnavailable: the server cannot be reached, started, or will not list its tools.
        RateLimited: the server's rate limit refused the listing.
    """
    peer = f"MCP server {name!r}"
    if url is None:
        assert command
        return await list_stdio_tools(command, name=peer, timeout_seconds=CONNECT_TIMEOUT_SECONDS, max_tools=MAX_TOOLS)
    # A one-off peer without a breaker: registering is a rare admin act and targets are arbitrary names.
    spec = PeerSpec(
        name=peer,
        url=url,
        api_key=SecretStr(bearer) if bearer else None,
        timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        mode="auto",
    )
    async with open_peer(spec, breakers=None) as server:
        return await server.list_tools(max_tools=MAX_TOOLS)


def parse_target(url: str | None, command: str | None) -> tuple[str | None, list[str] | None]:
    """Validate the URL (http/https) or split the command line; exactly one of them."""
    if (url is None) == (command is None):
        raise InvalidRequest("pass either url (Streamable HTTP endpoint) or command (stdio server), not both")
    if url is not None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidRequest("url must be an http:// or https:// MCP endpoint, e.g. http://127.0.0.1:8802/mcp")
        return url, None
    assert command is not None
    try:
        argv = shlex.split(command)
    except ValueError:
        raise InvalidRequest("command is not a valid shell-style command line") from None
    if not argv:
        raise InvalidRequest("command is empty")
    return None, argv


async def register_server(
    database: Database,
    vectors: VectorIndex,
    embedder: Embedder,
    name: str,
    *,
    url: str | None,
    command: str | None,
    bearer: str | None = None,
) -> RegisteredServer:
    """Connect to the server, index its tools, and remember how to reach it (re-register to re-index).

    With neither url nor command, re-indexes an already registered server. `bearer` (the operator-configured
    peer key, never a tool argument) authenticates to HTTP servers.
    """
    if url is None and command is None:
        known = await store.server_target(database, name)
        if known is None:
            raise NotFound(f"no registered server named {name!r}; pass url or command to register it")
        target_url, argv = known
    else:
        target_url, argv = parse_target(url, command)
    listed = await list_server_tools(target_url, argv, name, bearer=bearer)
    texts = [tool_text(name, str(t["name"]), t.get("title"), str(t.get("description") or "")) for t in listed]
    embeddings = await embedder.embed_documents(texts) if texts else []
    records = [
        store.ToolRecord(
            server=name,
            name=str(tool["name"]),
            title=tool.get("title"),
            description=str(tool.get("description") or ""),
            input_schema=dict(tool.get("inputSchema") or {}),
            point_id=tool_point_id(name, str(tool["name"])),
            embedding=store.pack_vector(vector),
        )
        for tool, vector in zip(listed, embeddings, strict=True)
    ]
    removed = await store.save_server_tools(database, name, target_url, argv, records, embedder.name)
    if records:
        await vectors.upsert(TOOLS_COLLECTION, [tool_point(record) for record in records])
    if removed:
        await vectors.delete(TOOLS_COLLECTION, removed)
    transport = "http" if target_url is not None else "stdio"
    return RegisteredServer(name=name, transport=transport, tools=[record.name for record in records])


async def find_tools(
    database: Database, vectors: VectorIndex, embedder: Embedder, query: str, *, limit: int, server: str | None
) -> FindToolsResult:
    """The registered tools that best fit `query`, best first."""
    text = check_query(query)
    dense = await embedder.embed_query(text)
    sparse = query_vector(text)
    mode: SearchMode = "hybrid" if sparse.indices else "dense"
    hits = await vectors.search(
        TOOLS_COLLECTION,
        dense=dense,
        sparse=sparse if sparse.indices else None,
        mode=mode,
        limit=limit,
        filters=tool_filters(server) or None,
    )
    known = await store.tools_by_point(database, [hit.id for hit in hits])
    matches = [
        ToolMatch(
            server=tool.server,
            name=tool.name,
            title=tool.title,
            description=tool.description,
            score=float(hit.score),
            input_schema=tool.input_schema,
        )
        for hit in hits
        if (tool := known.get(hit.id)) is not None
    ]
    return FindToolsResult(tools=matches)
