"""Document lifecycle: store (dedupe, chunk, embed, write, index), get, list and delete.

A store returns once PostgreSQL committed; it then applies the change to the vector index right away, and if
the index is unavailable the background indexer catches up (the result says `indexed: false`).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import anyio

from mcp_servers.aidb import store
from mcp_servers.aidb.chunking import Chunk, ChunkStrategy, choose_strategy, chunk_document
from mcp_servers.aidb.content import content_hash, guess_title, normalize_content
from mcp_servers.aidb.indexer import Indexer
from mcp_servers.aidb.inputs import check_metadata, project_to_store
from mcp_servers.aidb.models import DeleteResult, Document, DocumentList, ListRequest, StoreRequest, StoreResult
from mcp_servers.aidb.points import chunk_point_id, index_text
from mcp_servers.shared.config import AidbSettings
from mcp_servers.shared.cursors import decode_cursor, encode_cursor, fingerprint
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.errors import InvalidRequest, NotFound
from mcp_servers.shared.postgres.pool import Database

# Normalising and chunking a multi-megabyte document is pure CPU; keep it off the event loop, two at a time.
_CHUNKING_LIMITER = anyio.CapacityLimiter(2)


class DocumentDeps(Protocol):
    """What document operations need from the server's dependencies."""

    @property
    def database(self) -> Database: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def indexer(self) -> Indexer: ...

    @property
    def aidb(self) -> AidbSettings: ...


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A validated and normalised document, and how to chunk it."""

    document: store.NewDocument
    strategy: ChunkStrategy


@dataclass(frozen=True, slots=True)
class ChunkedDocument:
    """A prepared document split into chunks, ready to embed and write."""

    document: store.NewDocument
    chunks: list[Chunk]

    @property
    def index_texts(self) -> list[str]:
        """What the embedder sees for each chunk."""
        return [index_text(self.document.title, chunk.text) for chunk in self.chunks]

    def new_chunks(self, vectors: Sequence[Sequence[float]]) -> list[store.NewChunk]:
        """The chunks with their embeddings and (deterministic) point ids."""
        doc = self.document
        return [
            store.NewChunk(
                point_id=chunk_point_id(doc.project, doc.content_hash, chunk.index),
                index=chunk.index,
                heading=chunk.heading,
                start_line=chunk.start_line,
                text=chunk.text,
                embedding=vector,
            )
            for chunk, vector in zip(self.chunks, vectors, strict=True)
        ]


async def prepare_document(deps: DocumentDeps, request: StoreRequest) -> PreparedDocument:
    """Validate and normalise the content; InvalidRequest for what cannot be stored."""
    meta = check_metadata(request.metadata)
    normalized, digest = await anyio.to_thread.run_sync(
        _normalized, request.content, deps.aidb.max_document_bytes, limiter=_CHUNKING_LIMITER
    )
    source = request.source
    doc_title = (request.title or "").strip()[:500] or guess_title(normalized, fallback=source or "untitled")
    document = store.NewDocument(
        id=str(uuid.uuid4()),
        project=project_to_store(request.project),
        kind=request.kind,
        title=doc_title,
        source=source,
        content=normalized,
        content_hash=digest,
        metadata=meta,
        embedder=deps.embedder.name,
    )
    return PreparedDocument(document, choose_strategy(request.kind, source, normalized))


def _normalized(content: str, max_bytes: int) -> tuple[str, str]:
    """The normalised text and its hash, or InvalidRequest; CPU-bound (~0.1 s for 10 MB), so run in a thread."""
    size = len(content.encode("utf-8"))
    if size > max_bytes:
        raise InvalidRequest(
            f"document is {size} bytes; the limit is {max_bytes} bytes "
            "(MCP_STACK_AIDB__MAX_DOCUMENT_BYTES): split it or raise the limit"
        )
    normalized = normalize_content(content)
    if not normalized.strip():
        raise InvalidRequest("content is empty; pass the text to store")
    return normalized, content_hash(normalized)


async def chunk_prepared(deps: DocumentDeps, prepared: PreparedDocument) -> ChunkedDocument:
    """Split the document into chunks the embedder reads whole (in a worker thread: a large document is seconds
    of CPU)."""
    settings = deps.aidb
    title = prepared.document.title
    embedder = deps.embedder

    def fits(text: str) -> bool:
        return embedder.fits(index_text(title, text))

    chunks = await anyio.to_thread.run_sync(
        lambda: chunk_document(
            prepared.document.content,
            strategy=prepared.strategy,
            max_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            fits=fits,
        ),
        limiter=_CHUNKING_LIMITER,
    )
    return ChunkedDocument(prepared.document, chunks)


async def store_document(deps: DocumentDeps, request: StoreRequest) -> StoreResult:
    """Store a document (or find its duplicate, or update the one with the same source) and index it."""
    prepared = await prepare_document(deps, request)
    doc = prepared.document
    duplicate = await store.find_duplicate(deps.database, doc.project, doc.content_hash)
    if duplicate is not None:
        return _result(duplicate, doc.content_hash, indexed=True)
    chunked = await chunk_prepared(deps, prepared)
    vectors = await deps.embedder.embed_documents(chunked.index_texts)
    outcome = await store.write_document(deps.database, doc, chunked.new_chunks(vectors))
    indexed = True
    if outcome.status != "duplicate":
        indexed = await deps.indexer.apply_documents([outcome.document_id])
    return _result(outcome, doc.content_hash, indexed=indexed)


async def store_documents(deps: DocumentDeps, batch: Sequence[PreparedDocument]) -> list[StoreResult | None]:
    """Store prepared documents of one project together: one duplicate query, one embedder call, one commit and
    one index update for the batch. None where a concurrent write claimed the same content or source first.
    """
    if not batch:
        return []
    project = batch[0].document.project
    if any(prepared.document.project != project for prepared in batch):
        raise ValueError("store_documents takes documents of one project")
    known = await store.find_duplicates(deps.database, project, [p.document.content_hash for p in batch])
    # Identical files within the batch: the first is written, the others are its duplicates.
    fresh: dict[str, PreparedDocument] = {}
    for prepared in batch:
        if prepared.document.content_hash not in known:
            fresh.setdefault(prepared.document.content_hash, prepared)
    chunked = [await chunk_prepared(deps, prepared) for prepared in fresh.values()]
    vectors = await deps.embedder.embed_documents([text for doc in chunked for text in doc.index_texts])
    items: list[tuple[store.NewDocument, Sequence[store.NewChunk]]] = []
    offset = 0
    for doc in chunked:
        count = len(doc.chunks)
        items.append((doc.document, doc.new_chunks(vectors[offset : offset + count])))
        offset += count
    outcomes = await store.write_documents(deps.database, items)
    written = {doc.content_hash: outcome for (doc, _), outcome in zip(items, outcomes, strict=True)}
    changed = [o.document_id for o in written.values() if o is not None and o.status != "duplicate"]
    indexed = await deps.indexer.apply_documents(changed) if changed else True
    results: list[StoreResult | None] = []
    for prepared in batch:
        digest = prepared.document.content_hash
        if digest in known:
            results.append(_result(known[digest], digest, indexed=True))
            continue
        outcome = written[digest]
        if outcome is None:
            results.append(None)
        elif fresh[digest] is prepared:
            results.append(_result(outcome, digest, indexed=indexed))
        else:
            results.append(_result(replace(outcome, status="duplicate"), digest, indexed=indexed))
    return results


def _result(outcome: store.WriteOutcome, digest: str, *, indexed: bool) -> StoreResult:
    return StoreResult(
        document_id=outcome.document_id,
        status=outcome.status,
        title=outcome.title,
        chunks=outcome.chunks,
        indexed=indexed,
        content_hash=digest,
    )


def _document_id(raw: str) -> uuid.UUID:
    parsed = store.parse_id(raw)
    if parsed is None:
        raise NotFound(f"no document with id {raw[:80]!r}; ids come from search or list_documents")
    return parsed


async def get_document(database: Database, document_id: str) -> Document:
    """The document with its content; NotFound if it does not exist (or was deleted)."""
    document = await store.get_document(database, _document_id(document_id))
    if document is None:
        raise NotFound(f"no document with id {document_id!r}; ids come from search or list_documents")
    return document


async def list_documents(database: Database, request: ListRequest) -> DocumentList:
    """A page of documents, newest first."""
    project, kind, limit = request.project, request.kind, request.limit
    key = fingerprint(project, kind)
    after: tuple[datetime, uuid.UUID] | None = None
    if request.cursor:
        position = decode_cursor(request.cursor, "list", key)
        try:
            after = (datetime.fromisoformat(str(position["c"])), uuid.UUID(str(position["i"])))
        except (KeyError, ValueError):
            raise InvalidRequest("cursor is not valid; pass next_cursor from the previous page unchanged") from None
    documents = await store.list_documents(database, project=project, kind=kind, after=after, limit=limit + 1)
    next_cursor = None
    if len(documents) > limit:
        documents = documents[:limit]
        last = documents[-1]
        next_cursor = encode_cursor("list", key, {"c": last.created_at, "i": last.id})
    return DocumentList(documents=documents, next_cursor=next_cursor)


async def delete_document(database: Database, indexer: Indexer, document_id: str) -> DeleteResult:
    """Delete a document; it is gone from search as soon as this returns. Idempotent: deleting a document that
    is already gone (or never existed) returns `deleted=False`; NotFound only for a malformed id."""
    parsed = _document_id(document_id)
    if not await store.delete_document(database, parsed):
        return DeleteResult(document_id=str(parsed), deleted=False)
    await indexer.apply_documents([str(parsed)])
    return DeleteResult(document_id=str(parsed), deleted=True)
