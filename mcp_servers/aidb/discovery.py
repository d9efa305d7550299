"""Tool discovery: index the tools of other MCP servers and find the best ones for a task.

`register_server` connects through `shared.peers` (a Streamable HTTP URL on an allowed host, or a stdio server the
operator configured by name), lists the tools, embeds "name, title, description" of each and stores them in
PostgreSQL and the tools collection. Registering a name again re-indexes it. `find_tools` runs a hybrid search over
every registered server's tools.
"""

import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr

from mcp_servers.aidb import store
from mcp_servers.aidb.inputs import check_query
from mcp_servers.aidb.models import FindToolsResult, RegisteredServer, ToolMatch
from mcp_servers.aidb.points import TOOLS_COLLECTION, tool_filters, tool_point, tool_point_id, tool_text
from mcp_servers.shared.config import AidbSettings
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import InvalidRequest, NotFound
from mcp_servers.shared.hosts import HostAllowList, check_host_entry
from mcp_servers.shared.peers import PeerSpec, list_stdio_tools, open_peer
from mcp_servers.shared.postgres.pool import Database
from mcp_servers.shared.vectors.bm25 import query_vector
from mcp_servers.shared.vectors.port import SearchMode, VectorIndex

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0
MAX_TOOLS = 1000
ALLOW_LIST_SETTING = "aidb.allowed_peer_hosts"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_url(target: str) -> bool:
    """Whether a `register_servers` value is a Streamable HTTP URL (otherwise it is a stdio command line)."""
    return target.startswith(("http://", "https://"))


def _origin(url: str) -> tuple[str, str, int] | None:
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        return None
    if parsed.hostname is None or parsed.scheme not in _DEFAULT_PORTS:
        return None
    return parsed.scheme, parsed.hostname.lower(), port or _DEFAULT_PORTS[parsed.scheme]


@dataclass(frozen=True, slots=True)
class Targets:
    """What registering may reach, all from operator configuration: the stdio servers by name, the hosts a URL
    may name, and which key goes to which configured peer."""

    stdio: Mapping[str, tuple[str, ...]]
    peers: Mapping[str, str]
    keys: Mapping[str, SecretStr]
    allowed: HostAllowList

    @classmethod
    def of(cls, aidb: AidbSettings) -> "Targets":
        """The targets `aidb.register_servers`, `aidb.peer_api_key(s)` and `aidb.allowed_peer_hosts` describe."""
        peers = {name: target for name, target in aidb.register_servers.items() if is_url(target)}
        stdio = {
            name: tuple(shlex.split(target)) for name, target in aidb.register_servers.items() if not is_url(target)
        }
        keys: dict[str, SecretStr] = {}
        for name in peers:
            key = aidb.peer_api_keys.get(name, aidb.peer_api_key)
            if key is not None:
                keys[name] = key
        # The configured peers' own hosts are reachable whatever the list says: the operator named them.
        hosts = [check_host_entry(entry) for entry in aidb.allowed_peer_hosts]
        hosts += [origin[1] for url in peers.values() if (origin := _origin(url)) is not None]
        return cls(stdio=stdio, peers=peers, keys=keys, allowed=HostAllowList(tuple(hosts), ALLOW_LIST_SETTING))

    def bearer_for(self, url: str) -> SecretStr | None:
        """The key of the configured peer at this URL's origin (scheme, host, port); None for any other URL."""
        origin = _origin(url)
        if origin is None:
            return None
        for name, peer_url in self.peers.items():
            if _origin(peer_url) == origin and name in self.keys:
                return self.keys[name]
        return None


async def list_server_tools(
    url: str | None, command: Sequence[str] | None, name: str, targets: Targets
) -> list[dict[str, Any]]:
    """Every tool the server lists (all pages), as plain dicts.

    Raises:
        InvalidRequest: the URL's host is not on the allow-list (nothing is contacted).
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
        api_key=targets.bearer_for(url),
        timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        mode="auto",
        allowed_hosts=targets.allowed,
    )
    async with open_peer(spec, breakers=None) as server:
        return await server.list_tools(max_tools=MAX_TOOLS)


def check_url(url: str) -> str:
    """Validate a caller's URL: an http:// or https:// endpoint (its host is checked when connecting)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidRequest("url must be an http:// or https:// MCP endpoint, e.g. http://127.0.0.1:8802/mcp")
    return url


async def _target(
    database: Database, name: str, url: str | None, targets: Targets
) -> tuple[str | None, list[str] | None]:
    """Where `name` is: a new URL, an operator-configured stdio server, or what it was registered with."""
    operator_argv = targets.stdio.get(name)
    if url is not None:
        if operator_argv is not None:
            raise InvalidRequest(f"{name!r} is a stdio server from aidb.register_servers: register it by name only")
        return check_url(url), None
    if operator_argv is not None:
        return None, list(operator_argv)
    if name in targets.peers:
        return targets.peers[name], None
    known = await store.server_target(database, name)
    if known is None:
        raise NotFound(f"no registered server named {name!r}; pass url to register it")
    known_url, known_argv = known
    if known_url is None:
        # Registered with a command line before only operators could give one: not run again.
        raise InvalidRequest(
            f"{name!r} was registered with a command line; stdio servers now come only from aidb.register_servers"
        )
    return known_url, known_argv


async def register_server(
    database: Database,
    vectors: VectorIndex,
    embedder: Embedder,
    name: str,
    *,
    url: str | None,
    targets: Targets,
) -> RegisteredServer:
    """Connect to the server, index its tools, and remember how to reach it (re-register to re-index).

    With no url, `name` is an operator-configured stdio server (`targets.stdio`) or one registered before, which
    is re-indexed. A URL's host must be on `targets.allowed`; the configured peer keys go only to their own peers.
    """
    target_url, argv = await _target(database, name, url, targets)
    listed = await list_server_tools(target_url, argv, name, targets)
    records = await index_server_tools(database, vectors, embedder, name, target_url, argv, listed)
    transport = "http" if target_url is not None else "stdio"
    return RegisteredServer(name=name, transport=transport, tools=[record.name for record in records])


async def index_server_tools(
    database: Database,
    vectors: VectorIndex,
    embedder: Embedder,
    name: str,
    target_url: str | None,
    argv: Sequence[str] | None,
    tools: Sequence[Mapping[str, Any]],
) -> list[store.ToolRecord]:
    """Embed `tools` (MCP tool dicts) and replace server `name`'s stored and indexed tools with them."""
    texts = [tool_text(name, str(t["name"]), t.get("title"), str(t.get("description") or "")) for t in tools]
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
        for tool, vector in zip(tools, embeddings, strict=True)
    ]
    removed = await store.save_server_tools(database, name, target_url, argv, records, embedder.name)
    if records:
        await vectors.upsert(TOOLS_COLLECTION, [tool_point(record) for record in records])
    if removed:
        await vectors.delete(TOOLS_COLLECTION, removed)
    return records


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
