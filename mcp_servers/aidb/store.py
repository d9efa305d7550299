"""AIDB's SQL: documents, chunks, the outbox, the cache generation and the tool registry.

Every write that changes what a search can return runs in one transaction that also appends an outbox row
and bumps the generation, so a write is acknowledged only once it is durable, and the index and caches follow.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import numpy as np

from mcp_servers.aidb.models import Document, DocumentSummary, Kind, MetadataValue, ProjectInfo
from mcp_servers.shared.errors import Conflict
from mcp_servers.shared.postgres.pool import Connection, Database


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk ready to store: its point id, position, text and embedding."""

    point_id: str
    index: int
    heading: str
    start_line: int
    text: str
    embedding: Sequence[float]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A normalised document ready to store."""

    id: str
    project: str
    kind: Kind
    title: str
    source: str | None
    content: str
    content_hash: str
    metadata: dict[str, MetadataValue]
    embedder: str


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a store did: the document it touched, and whether it created, updated or found a duplicate."""

    document_id: str
    status: Literal["created", "updated", "duplicate"]
    title: str
    chunks: int


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A stored chunk with its document's fields, for search hits and for indexing."""

    point_id: str
    document_id: str
    chunk_index: int
    heading: str
    start_line: int
    text: str
    embedding: bytes
    title: str
    project: str
    kind: Kind
    source: str | None
    metadata: dict[str, MetadataValue]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A pending document change for the indexer."""

    id: int
    document_id: str
    stale_point_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolRecord:
    """A registered server's tool."""

    server: str
    name: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    point_id: str
    embedding: bytes


def pack_vector(vector: Sequence[float]) -> bytes:
    """float32 little-endian bytes of a vector."""
    return np.asarray(vector, dtype="<f4").tobytes()


def unpack_vector(blob: bytes) -> list[float]:
    """The vector stored by `pack_vector`."""
    return np.frombuffer(blob, dtype="<f4").astype(float).tolist()  # type: ignore[no-any-return]  # numpy stubs


def parse_id(raw: str) -> uuid.UUID | None:
    """The UUID in `raw`, or None if it is not one (callers answer NotFound)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def bump_generation(database: Database) -> None:
    """Invalidate every cached search; call it once what search sees has changed: after the commit of a document
    write, after the vector writes of the indexer (search reads the index directly, not the outbox).

    A sequence, not a counter row: a row every write updates serialises all writers on its lock. Bumped after the
    change is visible, a reader can never cache the earlier results under the new generation.
    """
    await database.fetchval("SELECT nextval('aidb_generation')")


async def generation(database: Database) -> int:
    """The current cache generation (changes whenever search results may change)."""
    return int(await database.fetchval("SELECT last_value FROM aidb_generation"))


async def find_duplicate(database: Database, project: str, digest: str) -> WriteOutcome | None:
    """The document in `project` with this content hash, as a duplicate outcome."""
    row = await database.fetchrow(
        "SELECT id, title, chunk_count FROM aidb_documents WHERE project = $1 AND content_hash = $2", project, digest
    )
    if row is None:
        return None
    return WriteOutcome(str(row["id"]), "duplicate", row["title"], row["chunk_count"])


async def find_duplicates(database: Database, project: str, digests: Sequence[str]) -> dict[str, WriteOutcome]:
    """`find_duplicate` for many content hashes in one query, keyed by hash."""
    rows = await database.fetch(
        "SELECT id, title, chunk_count, content_hash FROM aidb_documents WHERE project = $1 AND content_hash = ANY($2)",
        project,
        list(digests),
    )
    return {
        row["content_hash"]: WriteOutcome(str(row["id"]), "duplicate", row["title"], row["chunk_count"]) for row in rows
    }


async def write_document(database: Database, doc: NewDocument, chunks: Sequence[NewChunk]) -> WriteOutcome:
    """Create the document, or replace the content of the one with the same project and source.

    Identical content in the same project is a duplicate and writes nothing. Raises Conflict when a concurrent
    write claimed the same content or source first (the caller may retry).
    """
    try:
        async with database.transaction() as conn:
            outcome = await _write(conn, doc, chunks)
    except asyncpg.UniqueViolationError:
        raise Conflict("a concurrent write stored this content or source first; retry the call") from None
    await bump_generation(database)
    return outcome


async def write_documents(
    database: Database, items: Sequence[tuple[NewDocument, Sequence[NewChunk]]]
) -> list[WriteOutcome | None]:
    """`write_document` for many documents in one transaction (one commit); None where a concurrent write won.

    The documents must have distinct content hashes. If any of them conflicts, the batch is rolled back and
    each is written in a transaction of its own, so one conflict costs the batch its single commit, nothing more.
    """
    try:
        async with database.transaction() as conn:
            outcomes: list[WriteOutcome | None] = [await _write(conn, doc, chunks) for doc, chunks in items]
    except (Conflict, asyncpg.UniqueViolationError):
        outcomes = []
        for doc, chunks in items:
            try:
                outcomes.append(await write_document(database, doc, chunks))
            except Conflict:
                outcomes.append(None)
        return outcomes
    await bump_generation(database)
    return outcomes


async def _write(conn: Connection, doc: NewDocument, chunks: Sequence[NewChunk]) -> WriteOutcome:
    size = len(doc.content.encode("utf-8"))
    row = await conn.fetchrow(
        "SELECT id, title, chunk_count FROM aidb_documents WHERE project = $1 AND content_hash = $2",
        doc.project,
        doc.content_hash,
    )
    if row is not None:
        return WriteOutcome(str(row["id"]), "duplicate", row["title"], row["chunk_count"])
    previous = None
    if doc.source is not None:
        previous = await conn.fetchrow(
            "SELECT id FROM aidb_documents WHERE project = $1 AND source = $2 FOR UPDATE", doc.project, doc.source
        )
    if previous is not None:
        document_id: uuid.UUID = previous["id"]
        stale = [
            r["point_id"]
            for r in await conn.fetch("SELECT point_id FROM aidb_chunks WHERE document_id = $1", document_id)
        ]
        await conn.execute("DELETE FROM aidb_chunks WHERE document_id = $1", document_id)
        await conn.execute(
            """UPDATE aidb_documents SET kind = $2, title = $3, content = $4, content_hash = $5, metadata = $6,
               size_bytes = $7, chunk_count = $8, version = version + 1, updated_at = clock_timestamp()
               WHERE id = $1""",
            document_id,
            doc.kind,
            doc.title,
            doc.content,
            doc.content_hash,
            doc.metadata,
            size,
            len(chunks),
        )
        status: Literal["created", "updated"] = "updated"
    else:
        document_id = uuid.UUID(doc.id)
        stale = []
        inserted = await conn.fetchval(
            """INSERT INTO aidb_documents (id, project, kind, title, source, content, content_hash, metadata,
               size_bytes, chunk_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT DO NOTHING RETURNING id""",
            document_id,
            doc.project,
            doc.kind,
            doc.title,
            doc.source,
            doc.content,
            doc.content_hash,
            doc.metadata,
            size,
            len(chunks),
        )
        if inserted is None:
            raise Conflict("a concurrent write stored this content or source first; retry the call")
        status = "created"
    await conn.copy_records_to_table(
        "aidb_chunks",
        columns=[
            "point_id",
            "document_id",
            "chunk_index",
            "heading",
            "start_line",
            "text",
            "embedding",
            "embedder",
        ],
        records=[
            (
                uuid.UUID(c.point_id),
                document_id,
                c.index,
                c.heading,
                c.start_line,
                c.text,
                pack_vector(c.embedding),
                doc.embedder,
            )
            for c in chunks
        ],
    )
    await conn.execute("INSERT INTO aidb_outbox (document_id, stale_point_ids) VALUES ($1, $2)", document_id, stale)
    return WriteOutcome(str(document_id), status, doc.title, len(chunks))


async def delete_document(database: Database, document_id: uuid.UUID) -> bool:
    """Delete the document and its chunks; queue the removal of its points. False if it did not exist."""
    async with database.transaction() as conn:
        stale = [
            r["point_id"]
            for r in await conn.fetch("SELECT point_id FROM aidb_chunks WHERE document_id = $1", document_id)
        ]
        deleted = await conn.fetchval("DELETE FROM aidb_documents WHERE id = $1 RETURNING id", document_id)
        if deleted is None:
            return False
        await conn.execute("INSERT INTO aidb_outbox (document_id, stale_point_ids) VALUES ($1, $2)", document_id, stale)
    await bump_generation(database)
    return True


_SUMMARY_COLUMNS = (
    "id, title, project, kind, source, metadata, content_hash, size_bytes, chunk_count, version, created_at, updated_at"
)


def _summary_fields(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "project": row["project"],
        "kind": row["kind"],
        "source": row["source"],
        "metadata": row["metadata"],
        "content_hash": row["content_hash"],
        "size_bytes": row["size_bytes"],
        "chunk_count": row["chunk_count"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def get_document(database: Database, document_id: uuid.UUID) -> Document | None:
    """The document with its content, or None."""
    row = await database.fetchrow(f"SELECT {_SUMMARY_COLUMNS}, content FROM aidb_documents WHERE id = $1", document_id)
    if row is None:
        return None
    return Document(**_summary_fields(row), content=row["content"])


async def list_documents(
    database: Database,
    *,
    project: str | None,
    kind: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[DocumentSummary]:
    """Documents newest first, after the keyset position `after` (created_at, id)."""
    rows = await database.fetch(
        f"""SELECT {_SUMMARY_COLUMNS} FROM aidb_documents
            WHERE ($1::text IS NULL OR project = $1) AND ($2::text IS NULL OR kind = $2)
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $5""",
        project,
        kind,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [DocumentSummary(**_summary_fields(row)) for row in rows]


async def created_at(database: Database, document_id: uuid.UUID) -> datetime | None:
    """When the document was created (for list cursors)."""
    value: datetime | None = await database.fetchval("SELECT created_at FROM aidb_documents WHERE id = $1", document_id)
    return value


async def projects(database: Database) -> list[ProjectInfo]:
    """Every project with its document count, by name."""
    rows = await database.fetch("SELECT project, count(*) AS n FROM aidb_documents GROUP BY project ORDER BY project")
    return [ProjectInfo(project=row["project"], documents=row["n"]) for row in rows]


async def project_names(database: Database, prefix: str, limit: int) -> list[str]:
    """Project names starting with `prefix`, by name (completions)."""
    rows = await database.fetch(
        "SELECT DISTINCT project FROM aidb_documents WHERE starts_with(project, $1) ORDER BY project LIMIT $2",
        prefix,
        limit,
    )
    return [row["project"] for row in rows]


async def document_ids_between(database: Database, low: str, high: str, limit: int) -> list[str]:
    """Ids of documents in the inclusive id range, in id order (completions of a typed id prefix)."""
    rows = await database.fetch(
        "SELECT id FROM aidb_documents WHERE id BETWEEN $1::uuid AND $2::uuid ORDER BY id LIMIT $3", low, high, limit
    )
    return [str(row["id"]) for row in rows]


_CHUNK_COLUMNS = """c.point_id, c.document_id, c.chunk_index, c.heading, c.start_line, c.text, c.embedding,
    d.title, d.project, d.kind, d.source, d.metadata, d.updated_at"""


_SEARCH_CHUNK_COLUMNS = _CHUNK_COLUMNS.replace(" c.embedding,", "")


def _chunk_record(row: asyncpg.Record) -> ChunkRecord:
    return ChunkRecord(
        point_id=str(row["point_id"]),
        document_id=str(row["document_id"]),
        chunk_index=row["chunk_index"],
        heading=row["heading"],
        start_line=row["start_line"],
        text=row["text"],
        embedding=row.get("embedding") or b"",
        title=row["title"],
        project=row["project"],
        kind=row["kind"],
        source=row["source"],
        metadata=row["metadata"],
        updated_at=row["updated_at"],
    )


async def chunks_by_point(database: Database, point_ids: Sequence[str]) -> dict[str, ChunkRecord]:
    """The live chunks among `point_ids` (deleted documents and replaced chunks are simply absent).

    Without their embeddings (`embedding` is empty): searches never need them, and they are most of a row.
    """
    if not point_ids:
        return {}
    rows = await database.fetch(
        f"""SELECT {_SEARCH_CHUNK_COLUMNS} FROM aidb_chunks c JOIN aidb_documents d ON d.id = c.document_id
            WHERE c.point_id = ANY($1::uuid[])""",
        list(point_ids),
    )
    return {str(row["point_id"]): _chunk_record(row) for row in rows}


async def claim_outbox(
    conn: Connection, limit: int, document_ids: Sequence[uuid.UUID] | None = None
) -> tuple[list[OutboxEntry], list[ChunkRecord]]:
    """Lock up to `limit` outbox rows and return them with their documents' current chunks.

    Runs inside the caller's transaction. Rows another indexer holds are skipped, except when specific
    documents are asked for: then this waits, so the caller returns only once those changes are applied.
    Documents are not locked (a vector upsert can take long); see `current_point_ids` for how a newer version
    written meanwhile is kept from being overwritten.
    """
    if document_ids is None:
        rows = await conn.fetch(
            "SELECT id, document_id, stale_point_ids FROM aidb_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    else:
        rows = await conn.fetch(
            """SELECT id, document_id, stale_point_ids FROM aidb_outbox WHERE document_id = ANY($1::uuid[])
               ORDER BY id LIMIT $2 FOR UPDATE""",
            list(document_ids),
            limit,
        )
    entries = [
        OutboxEntry(row["id"], str(row["document_id"]), tuple(str(p) for p in row["stale_point_ids"])) for row in rows
    ]
    if not entries:
        return [], []
    ids = sorted({uuid.UUID(entry.document_id) for entry in entries})
    chunk_rows = await conn.fetch(
        f"""SELECT {_CHUNK_COLUMNS} FROM aidb_chunks c JOIN aidb_documents d ON d.id = c.document_id
            WHERE c.document_id = ANY($1::uuid[]) ORDER BY c.document_id, c.chunk_index""",
        ids,
    )
    return entries, [_chunk_record(row) for row in chunk_rows]


async def current_point_ids(conn: Connection, point_ids: Sequence[str]) -> set[str]:
    """Which of these chunk point ids still exist (a statement of its own: it sees every commit so far)."""
    rows = await conn.fetch("SELECT point_id FROM aidb_chunks WHERE point_id = ANY($1::uuid[])", list(point_ids))
    return {str(row["point_id"]) for row in rows}


async def finish_outbox(conn: Connection, entry_ids: Sequence[int]) -> None:
    """Delete applied outbox rows (inside the claiming transaction; bump the generation after it commits)."""
    await conn.execute("DELETE FROM aidb_outbox WHERE id = ANY($1::bigint[])", list(entry_ids))


async def all_chunks(database: Database, *, project: str | None, after: str | None, limit: int) -> list[ChunkRecord]:
    """A page of every stored chunk (optionally in one project), by point id, for reindex."""
    rows = await database.fetch(
        f"""SELECT {_CHUNK_COLUMNS} FROM aidb_chunks c JOIN aidb_documents d ON d.id = c.document_id
            WHERE ($1::text IS NULL OR d.project = $1) AND ($2::uuid IS NULL OR c.point_id > $2::uuid)
            ORDER BY c.point_id LIMIT $3""",
        project,
        after,
        limit,
    )
    return [_chunk_record(row) for row in rows]


async def chunk_count(database: Database, *, project: str | None) -> int:
    """How many chunks are stored (in one project, or all)."""
    count = await database.fetchval(
        """SELECT count(*) FROM aidb_chunks c JOIN aidb_documents d ON d.id = c.document_id
           WHERE $1::text IS NULL OR d.project = $1""",
        project,
    )
    return int(count or 0)


async def queue_reindex(database: Database, *, project: str | None) -> int:
    """Queue every document (of one project, or all) for the indexer, as if each had just changed; returns how
    many. The running server's indexer applies them (`mcp-stack reindex` while AIDB runs)."""
    async with database.transaction() as conn:
        status = await conn.execute(
            """INSERT INTO aidb_outbox (document_id)
               SELECT id FROM aidb_documents WHERE $1::text IS NULL OR project = $1""",
            project,
        )
    return int(status.split()[-1])


async def outbox_ids(database: Database) -> list[int]:
    """Ids of the outbox rows committed so far."""
    return [row["id"] for row in await database.fetch("SELECT id FROM aidb_outbox ORDER BY id")]


async def clear_outbox(database: Database, entry_ids: Sequence[int]) -> int:
    """Drop these outbox rows (a full rebuild already reflects them); returns how many were dropped."""
    async with database.transaction() as conn:
        status = await conn.execute("DELETE FROM aidb_outbox WHERE id = ANY($1::bigint[])", list(entry_ids))
    await bump_generation(database)
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class Counts:
    """Sizes for the stats tool."""

    documents: int
    chunks: int
    pending: int
    projects: int
    by_kind: dict[str, int]
    by_embedder: dict[str, int]
    servers: int
    tools: int


async def counts(database: Database) -> Counts:
    """Document, chunk, outbox, project, server and tool counts in one round trip."""
    row = await database.fetchrow(
        """SELECT (SELECT count(*) FROM aidb_documents) AS documents,
                  (SELECT count(*) FROM aidb_chunks) AS chunks,
                  (SELECT count(*) FROM aidb_outbox) AS pending,
                  (SELECT count(DISTINCT project) FROM aidb_documents) AS projects,
                  (SELECT coalesce(jsonb_object_agg(kind, n), '{}'::jsonb)
                     FROM (SELECT kind, count(*) AS n FROM aidb_documents GROUP BY kind) k) AS by_kind,
                  (SELECT coalesce(jsonb_object_agg(embedder, n), '{}'::jsonb)
                     FROM (SELECT embedder, count(*) AS n FROM aidb_chunks GROUP BY embedder) e) AS by_embedder,
                  (SELECT count(*) FROM aidb_mcp_servers) AS servers,
                  (SELECT count(*) FROM aidb_tools) AS tools"""
    )
    assert row is not None
    return Counts(
        documents=row["documents"],
        chunks=row["chunks"],
        pending=row["pending"],
        projects=row["projects"],
        by_kind=dict(row["by_kind"]),
        by_embedder=dict(row["by_embedder"]),
        servers=row["servers"],
        tools=row["tools"],
    )


async def save_server_tools(
    database: Database,
    name: str,
    url: str | None,
    command: Sequence[str] | None,
    tools: Sequence[ToolRecord],
    embedder: str,
) -> list[str]:
    """Register (or re-register) a server and replace its tools; returns the point ids of the tools removed."""
    async with database.transaction() as conn:
        await conn.execute(
            """INSERT INTO aidb_mcp_servers (name, url, command, indexed_at, tool_count)
               VALUES ($1, $2, $3, now(), $4)
               ON CONFLICT (name) DO UPDATE SET url = $2, command = $3, indexed_at = now(), tool_count = $4""",
            name,
            url,
            list(command) if command is not None else None,
            len(tools),
        )
        old = await conn.fetch("SELECT point_id FROM aidb_tools WHERE server = $1", name)
        await conn.execute("DELETE FROM aidb_tools WHERE server = $1", name)
        await conn.executemany(
            """INSERT INTO aidb_tools (server, name, title, description, input_schema, point_id, embedding, embedder)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            [
                (t.server, t.name, t.title, t.description, t.input_schema, uuid.UUID(t.point_id), t.embedding, embedder)
                for t in tools
            ],
        )
    current = {t.point_id for t in tools}
    return [str(r["point_id"]) for r in old if str(r["point_id"]) not in current]


async def server_target(database: Database, name: str) -> tuple[str | None, list[str] | None] | None:
    """A registered server's URL or command, or None if unknown."""
    row = await database.fetchrow("SELECT url, command FROM aidb_mcp_servers WHERE name = $1", name)
    if row is None:
        return None
    return row["url"], list(row["command"]) if row["command"] is not None else None


async def tools_by_point(database: Database, point_ids: Sequence[str]) -> dict[str, ToolRecord]:
    """The registered tools among `point_ids`."""
    if not point_ids:
        return {}
    rows = await database.fetch(
        """SELECT server, name, title, description, input_schema, point_id, embedding FROM aidb_tools
           WHERE point_id = ANY($1::uuid[])""",
        list(point_ids),
    )
    return {str(row["point_id"]): _tool_record(row) for row in rows}


async def chunks_embedded_by_others(
    database: Database, embedder: str, *, project: str | None, after: str | None, limit: int
) -> list[tuple[str, str, str]]:
    """A page of (point id, document title, chunk text) of chunks not embedded by `embedder`, by point id."""
    rows = await database.fetch(
        """SELECT c.point_id, d.title, c.text FROM aidb_chunks c JOIN aidb_documents d ON d.id = c.document_id
           WHERE c.embedder <> $1 AND ($2::text IS NULL OR d.project = $2)
             AND ($3::uuid IS NULL OR c.point_id > $3::uuid)
           ORDER BY c.point_id LIMIT $4""",
        embedder,
        project,
        None if after is None else uuid.UUID(after),
        limit,
    )
    return [(str(row["point_id"]), row["title"], row["text"]) for row in rows]


async def tools_embedded_by_others(database: Database, embedder: str) -> list[ToolRecord]:
    """Registered tools whose embedding came from another model."""
    rows = await database.fetch(
        """SELECT server, name, title, description, input_schema, point_id, embedding FROM aidb_tools
           WHERE embedder <> $1 ORDER BY point_id""",
        embedder,
    )
    return [_tool_record(row) for row in rows]


async def replace_embeddings(
    database: Database,
    table: Literal["aidb_chunks", "aidb_tools"],
    vectors: Mapping[str, Sequence[float]],
    embedder: str,
) -> None:
    """Store new embeddings (by point id) and the model that made them, in one transaction."""
    async with database.transaction() as conn:
        await conn.executemany(
            f"UPDATE {table} SET embedding = $2, embedder = $3 WHERE point_id = $1",
            [(uuid.UUID(point), pack_vector(vector), embedder) for point, vector in vectors.items()],
        )


async def all_tools(database: Database) -> list[ToolRecord]:
    """Every registered tool (for reindex)."""
    rows = await database.fetch(
        "SELECT server, name, title, description, input_schema, point_id, embedding FROM aidb_tools ORDER BY point_id"
    )
    return [_tool_record(row) for row in rows]


def _tool_record(row: asyncpg.Record) -> ToolRecord:
    return ToolRecord(
        server=row["server"],
        name=row["name"],
        title=row["title"],
        description=row["description"],
        input_schema=row["input_schema"],
        point_id=str(row["point_id"]),
        embedding=row["embedding"],
    )
