"""AIDB's point schema: the vector-index collections, the id, vectors and payload of each point, and its filters.

A chunk point (collection `aidb_chunks`) carries the stored embedding, BM25 weights of `index_text`, and the
payload `document_id`, `project`, `kind`, `chunk_index` plus each metadata key as `meta__<key>`. A tool point
(`aidb_tools`) carries the payload `server` and `name`. Ids are deterministic, so applying a change twice
overwrites. The indexer, search, documents, discovery and re-embedding all use this one definition.
"""

from collections.abc import Mapping
from typing import Any

from mcp_servers.aidb import store
from mcp_servers.aidb.store import ChunkRecord, ToolRecord
from mcp_servers.shared.vectors.bm25 import document_vector
from mcp_servers.shared.vectors.ids import point_id
from mcp_servers.shared.vectors.port import FilterValue, VectorPoint

CHUNKS_COLLECTION = "aidb_chunks"
TOOLS_COLLECTION = "aidb_tools"
META_PREFIX = "meta__"


def chunk_point_id(project: str, content_hash: str, chunk_index: int) -> str:
    """A chunk's point id: it depends only on (project, content, position).

    Content is unique per project, so ids never clash, and storing the same content again (even after a delete)
    yields the same ids.
    """
    return point_id(project, content_hash, chunk_index)


def tool_point_id(server: str, name: str) -> str:
    """A registered tool's point id."""
    return point_id("tool", server, name)


def index_text(title: str, text: str) -> str:
    """What is embedded and BM25-weighted for a chunk: its text, led by the document title if not already there."""
    return text if not title or text.startswith(title) else f"{title}\n{text}"


def tool_text(server: str, name: str, title: str | None, description: str) -> str:
    """What is embedded and BM25-weighted for a tool."""
    return "\n".join(part for part in (name.replace("_", " "), title or "", description, f"server {server}") if part)


def chunk_payload(chunk: ChunkRecord) -> dict[str, Any]:
    """Payload stored with a chunk's point: the fields searches filter on."""
    payload: dict[str, Any] = {
        "document_id": chunk.document_id,
        "project": chunk.project,
        "kind": chunk.kind,
        "chunk_index": chunk.chunk_index,
    }
    for key, value in chunk.metadata.items():
        payload[META_PREFIX + key] = value
    return payload


def chunk_point(chunk: ChunkRecord) -> VectorPoint:
    """The vector point of a stored chunk (dense from the stored embedding, BM25 from its text)."""
    return VectorPoint(
        id=chunk.point_id,
        dense=store.unpack_vector(chunk.embedding),
        sparse=document_vector(index_text(chunk.title, chunk.text)),
        payload=chunk_payload(chunk),
    )


def tool_point(tool: ToolRecord) -> VectorPoint:
    """The vector point of a registered tool."""
    return VectorPoint(
        id=tool.point_id,
        dense=store.unpack_vector(tool.embedding),
        sparse=document_vector(tool_text(tool.server, tool.name, tool.title, tool.description)),
        payload={"server": tool.server, "name": tool.name},
    )


def chunk_filters(
    project: str | None, kind: str | None, metadata: Mapping[str, FilterValue] | None
) -> dict[str, FilterValue]:
    """Payload filters selecting the chunks of a search (empty: every chunk)."""
    filters: dict[str, FilterValue] = {}
    if project is not None:
        filters["project"] = project
    if kind is not None:
        filters["kind"] = kind
    for key, value in (metadata or {}).items():
        filters[META_PREFIX + key] = value
    return filters


def project_filter(project: str) -> dict[str, FilterValue]:
    """Payload filter selecting every chunk of one project."""
    return {"project": project}


def tool_filters(server: str | None) -> dict[str, FilterValue]:
    """Payload filters selecting the tools of one registered server (empty: every server's)."""
    return {"server": server} if server else {}
