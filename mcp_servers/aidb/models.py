"""AIDB tool inputs and outputs (module level, so the SDK can resolve them).

A tool hands its validated arguments to the logic as one request object (`StoreRequest`, `SearchRequest`, ...),
so the logic's signature never re-spells the tool's parameter list.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["doc", "code", "skill", "error_solution", "best_practice", "note"]
KINDS: tuple[Kind, ...] = ("doc", "code", "skill", "error_solution", "best_practice", "note")
Mode = Literal["hybrid", "dense", "lexical"]
MetadataValue = str | int | float | bool
FilterValue = str | int | bool | list[str]
StoreStatus = Literal["created", "updated", "duplicate"]


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """A document to store: the arguments of store_document (ingest_path builds one per file)."""

    content: str
    title: str | None = None
    project: str | None = None
    kind: Kind = "doc"
    source: str | None = None
    metadata: Mapping[str, MetadataValue] | None = None


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """The files to store: the arguments of ingest_path."""

    path: str
    glob: str = "*"
    project: str | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A search: the arguments of the search tool, with the page size resolved."""

    query: str
    mode: Mode
    limit: int
    project: str | None = None
    kind: str | None = None
    filters: Mapping[str, FilterValue] | None = None
    min_score: float | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A page of documents: the arguments of list_documents."""

    limit: int
    project: str | None = None
    kind: str | None = None
    cursor: str | None = None


class StoreResult(BaseModel):
    """What store_document did with the content."""

    document_id: str
    status: StoreStatus = Field(
        description="created = new document; updated = same source, new content; duplicate = identical content "
        "already stored in this project (nothing written)"
    )
    title: str
    chunks: int = Field(description="number of chunks the content was split into")
    indexed: bool = Field(description="false if the vector index was unreachable; it catches up automatically")
    content_hash: str = Field(description="SHA-256 of the normalised content")


class SkippedFile(BaseModel):
    """A file ingest_path did not store, and why."""

    path: str = Field(description="path relative to the ingested directory")
    reason: str


class SkippedSummary(BaseModel):
    """The files ingest_path did not store: how many, by reason, and a few examples."""

    total: int
    by_reason: dict[str, int] = Field(description="reason -> number of files, most frequent first")
    examples: list[SkippedFile] = Field(description="the first few skipped files, with their reasons")


class IngestResult(BaseModel):
    """Counts of what ingest_path did with each matching file."""

    files_seen: int
    created: int
    updated: int
    unchanged: int = Field(description="identical content already stored (skipped)")
    skipped: SkippedSummary = Field(description="refused files: binary, oversized, symlinks out of the roots")
    document_ids: list[str] = Field(description="ids of the created and updated documents")


class Provenance(BaseModel):
    """Where a hit comes from."""

    source: str | None = Field(description="file path or URL given when stored")
    chunk_index: int
    heading: str = Field(description="markdown heading path or code block the chunk belongs to")
    start_line: int = Field(description="1-based line of the document where the chunk starts")
    project: str
    kind: Kind
    updated_at: str


class SearchHit(BaseModel):
    """The best-matching chunk of one document."""

    document_id: str
    title: str
    text: str = Field(description="the matching chunk")
    score: float = Field(
        description="dense: cosine similarity; lexical: BM25; hybrid: 0-1 mix of both, scaled over the candidates"
    )
    metadata: dict[str, MetadataValue]
    provenance: Provenance


class SearchResult(BaseModel):
    """One page of search hits, best first, one hit per document."""

    hits: list[SearchHit]
    next_cursor: str | None = Field(description="pass as cursor to get the next page; null = no more results")
    mode: Mode
    cached: bool = Field(description="served from the query cache")


class DocumentSummary(BaseModel):
    """A stored document without its content."""

    id: str
    title: str
    project: str
    kind: Kind
    source: str | None
    metadata: dict[str, MetadataValue]
    content_hash: str
    size_bytes: int
    chunk_count: int
    version: int
    created_at: str
    updated_at: str


class Document(DocumentSummary):
    """A stored document with its full content."""

    content: str


class DocumentList(BaseModel):
    """One page of documents, newest first."""

    documents: list[DocumentSummary]
    next_cursor: str | None = Field(description="pass as cursor to get the next page; null = last page")


class DeleteResult(BaseModel):
    """Outcome of delete_document."""

    document_id: str
    deleted: bool = Field(description="false when the document was already gone (deleting is idempotent)")


class StatsResult(BaseModel):
    """Sizes of the knowledge base and the engines behind it."""

    documents: int = Field(description="documents stored in PostgreSQL")
    chunks: int = Field(description="chunks stored in PostgreSQL")
    chunks_indexed: int = Field(description="chunk vectors in the vector index")
    pending_index: int = Field(description="document changes not yet applied to the vector index")
    projects: int
    documents_by_kind: dict[str, int]
    registered_servers: int
    tools_indexed: int
    vector_backend: str
    embedder: str
    chunks_by_embedder: dict[str, int] = Field(
        description="chunks per embedding model; more than one after a model change: reindex with reembed=true"
    )
    dimension: int
    cache_hits: int
    cache_misses: int


class ReindexResult(BaseModel):
    """What reindex rebuilt from PostgreSQL."""

    documents: int
    chunks: int
    tools: int
    pending_applied: int = Field(description="outbox entries drained and cleared by the rebuild")
    reembedded: int = Field(default=0, description="chunks and tools embedded again (reembed=true)")


class ProjectInfo(BaseModel):
    """One project and its document count."""

    project: str
    documents: int


class ProjectList(BaseModel):
    """Every project with at least one document."""

    projects: list[ProjectInfo]


class RegisteredServer(BaseModel):
    """A registered MCP server and the tools AIDB indexed from it."""

    name: str
    transport: Literal["http", "stdio"]
    tools: list[str]


class ToolMatch(BaseModel):
    """A tool of a registered server that fits the task."""

    server: str
    name: str
    title: str | None
    description: str
    score: float = Field(description="hybrid reciprocal-rank-fusion score")
    input_schema: dict[str, Any]


class FindToolsResult(BaseModel):
    """Best tools across all registered servers, best first."""

    tools: list[ToolMatch]
