-- AIDB: documents and chunks (the source of truth), the outbox the indexer drains into the vector index,
-- the cache generation, and the registry of other MCP servers' tools for find_tools.

CREATE TABLE aidb_documents (
    id           uuid PRIMARY KEY,
    project      text NOT NULL,
    kind         text NOT NULL,
    title        text NOT NULL,
    source       text NULL,
    content      text NOT NULL,
    content_hash text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    size_bytes   integer NOT NULL,
    chunk_count  integer NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The same normalised content is stored once per project; a source (file path, URL) names one document.
CREATE UNIQUE INDEX aidb_documents_project_hash_key ON aidb_documents (project, content_hash);
CREATE UNIQUE INDEX aidb_documents_project_source_key ON aidb_documents (project, source) WHERE source IS NOT NULL;
-- list_documents pages newest first, optionally within a project and kind.
CREATE INDEX aidb_documents_created_idx ON aidb_documents (created_at DESC, id DESC);
CREATE INDEX aidb_documents_project_kind_idx ON aidb_documents (project, kind, created_at DESC, id DESC);

CREATE TABLE aidb_chunks (
    point_id    uuid PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES aidb_documents (id) ON DELETE CASCADE,
    chunk_index integer NOT NULL,
    heading     text NOT NULL DEFAULT '',
    start_line  integer NOT NULL,
    text        text NOT NULL,
    -- float32 little-endian; kept so `reindex` rebuilds the vector index without re-embedding.
    embedding   bytea NOT NULL,
    embedder    text NOT NULL,
    UNIQUE (document_id, chunk_index)
);

-- One row per document change; the indexer applies the document's current chunks, deletes the stale points,
-- then deletes the row. Rows survive a crash, so nothing acknowledged is ever lost from the index.
CREATE TABLE aidb_outbox (
    id              bigserial PRIMARY KEY,
    document_id     uuid NOT NULL,
    stale_point_ids uuid[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Advanced after every commit that changes what a search can return; search caches key on it. A sequence, so
-- writers never queue on one counter row.
CREATE SEQUENCE aidb_generation;

CREATE TABLE aidb_mcp_servers (
    name          text PRIMARY KEY,
    url           text NULL,
    command       text[] NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    indexed_at    timestamptz NULL,
    tool_count    integer NOT NULL DEFAULT 0,
    CHECK ((url IS NULL) <> (command IS NULL))
);

CREATE TABLE aidb_tools (
    server       text NOT NULL REFERENCES aidb_mcp_servers (name) ON DELETE CASCADE,
    name         text NOT NULL,
    title        text NULL,
    description  text NOT NULL DEFAULT '',
    input_schema jsonb NOT NULL,
    point_id     uuid NOT NULL UNIQUE,
    embedding    bytea NOT NULL,
    embedder     text NOT NULL,
    PRIMARY KEY (server, name)
);
