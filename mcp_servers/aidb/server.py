"""AIDB: the knowledge-base MCP server.

Offers: `store_document`, `ingest_path`, `search`, `get_document`, `list_documents`, `delete_document`, `stats`,
`reindex` (admin), `register_mcp_server` (admin), `find_tools`; resources `aidb://documents/{id}` and
`aidb://projects`; the prompt `answer_with_sources`; completions of project names and document ids; `ingest_path`
and `reindex` run as MCP tasks (`io.modelcontextprotocol/tasks`) for a client that asks (mcp_tasks.py). Depends on
PostgreSQL (documents, the source of truth), a vector index (Qdrant Edge or a Qdrant server) and a sentence
embedder. Failures the model can act on (unknown id, duplicate, path outside the roots, oversized document,
dependency down: retry later) come back as tool errors; unknown tools, missing scopes and rate limits are
JSON-RPC errors.
"""

import functools
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field

from mcp_servers.aidb import completions, discovery, documents, indexer, notify, prompts
from mcp_servers.aidb.deps import AidbDeps, cache_counter, open_aidb
from mcp_servers.aidb.ingest import ingest_path as ingest_files
from mcp_servers.aidb.inputs import MAX_QUERY_CHARS, project_to_read
from mcp_servers.aidb.mcp_tasks import tasks_extension
from mcp_servers.aidb.models import (
    DeleteResult,
    Document,
    DocumentList,
    FilterValue,
    FindToolsResult,
    IngestRequest,
    IngestResult,
    Kind,
    ListRequest,
    MetadataValue,
    Mode,
    RegisteredServer,
    ReindexResult,
    SearchRequest,
    SearchResult,
    StatsResult,
    StoreRequest,
    StoreResult,
)
from mcp_servers.aidb.reembed import reembed as embed_again
from mcp_servers.aidb.search import SUGGESTED_MIN_SCORE
from mcp_servers.aidb.stats import collect_stats
from mcp_servers.shared.annotations import DESTRUCTIVE, IDEMPOTENT_WRITE, OPEN_WORLD, READ_ONLY
from mcp_servers.shared.harness import Core, StackServer

INSTRUCTIONS = (
    "Knowledge base for agents. Call `search` before answering questions about the user's projects, code, skills "
    "or past error solutions; store what you learn with `store_document` (or a directory with `ingest_path`). "
    "A document stored without a project goes to project 'default', and search and list_documents without a "
    "project read 'default' too; pass project='*' to read every project. "
    "Use `find_tools` to discover tools of AIDB and of other registered MCP servers."
)

Project = Annotated[
    str | None,
    Field(description="project namespace; omitted = 'default' (where documents stored without one go)", max_length=200),
]
ReadProject = Annotated[
    str | None,
    Field(description="only this project; omitted = 'default' (as when storing); '*' = every project", max_length=200),
]
ReindexProject = Annotated[str | None, Field(description="only this project; omitted = every project", max_length=200)]
DocId = Annotated[str, Field(description="document id from search or list_documents", max_length=100)]


def _deps(ctx: Context[AidbDeps, Any]) -> AidbDeps:
    return ctx.request_context.lifespan_context


def create_server(core: Core) -> StackServer[AidbDeps]:
    """Build the AIDB server; nothing is opened until a transport starts it."""

    # The counter outlives each opening of the dependencies (legacy SSE may reopen them in one process).
    async def own_tools() -> list[dict[str, Any]]:
        return [tool.model_dump(by_alias=True, exclude_none=True) for tool in await server.mcp.list_tools()]

    open_deps = functools.partial(open_aidb, cache_requests=cache_counter(core.metrics.registry), own_tools=own_tools)
    server = StackServer(
        core,
        instructions=INSTRUCTIONS,
        open_deps=open_deps,
        title="AIDB knowledge base",
        extensions=[tasks_extension(core.settings.aidb)],
    )

    @server.tool("store_document", annotations=IDEMPOTENT_WRITE)
    async def store_document(
        content: Annotated[str, Field(description="the text: markdown, code or plain text (max 10 MB by default)")],
        ctx: Context[AidbDeps, Any],
        title: Annotated[str | None, Field(description="title; default: first heading or line", max_length=500)] = None,
        project: Project = None,
        kind: Annotated[Kind, Field(description="what the content is; code is chunked by blocks")] = "doc",
        source: Annotated[
            str | None,
            Field(
                description="where it comes from (path, URL); storing new content with the same source updates "
                "that document",
                max_length=2000,
            ),
        ] = None,
        metadata: Annotated[
            dict[str, MetadataValue] | None, Field(description="flat key/value tags, filterable in search")
        ] = None,
    ) -> StoreResult:
        """Store a document: chunked, embedded and indexed for search. Identical content in the same project is
        not stored twice (status `duplicate`); new content for a known `source` updates it (status `updated`).
        Returns the document id. Searchable as soon as this returns."""
        request = StoreRequest(content, title, project, kind, source, metadata)
        result = await documents.store_document(_deps(ctx), request)
        await notify.documents_changed(server.fanout, [result.document_id] if result.status != "duplicate" else [])
        return result

    @server.tool("ingest_path", annotations=IDEMPOTENT_WRITE)
    async def ingest_path(
        path: Annotated[
            str, Field(description="file or directory under an allowed root (relative = first root)", max_length=4096)
        ],
        ctx: Context[AidbDeps, Any],
        glob: Annotated[str, Field(description="file pattern, e.g. '*.md' or 'docs/**/*.py'", max_length=200)] = "*",
        project: Project = None,
    ) -> IngestResult:
        """Store every matching text file under a directory of the configured allowed roots. HTML is stored as
        its text (titled by its <title>), PDF text is extracted (encrypted and scanned PDFs are skipped),
        .gz/.bz2/.xz files decompressed. Changed files update their document, unchanged ones are skipped; binary,
        oversized and symlinked-out files are counted by reason, with a few examples. Sends progress notifications
        with a message at least every 2 s (as a task: its statusMessage).
        Refuses paths outside the roots."""
        result = await ingest_files(_deps(ctx), IngestRequest(path, glob, project), progress=ctx.report_progress)
        await notify.documents_changed(server.fanout, result.document_ids)
        return result

    @server.tool("search", annotations=READ_ONLY)
    async def search(
        query: Annotated[str, Field(description="words or a question", min_length=1, max_length=MAX_QUERY_CHARS)],
        ctx: Context[AidbDeps, Any],
        project: ReadProject = None,
        kind: Annotated[Kind | None, Field(description="only documents of this kind")] = None,
        filters: Annotated[
            dict[str, FilterValue] | None,
            Field(description="metadata equality filters; a list value matches any of its strings"),
        ] = None,
        limit: Annotated[
            int | None, Field(description="hits per page; default from settings (10)", ge=1, le=100, strict=True)
        ] = None,
        mode: Annotated[
            Mode, Field(description="hybrid (default: meaning + keywords), dense (meaning), lexical (BM25 keywords)")
        ] = "hybrid",
        min_score: Annotated[
            float | None,
            Field(
                description="drop hits scoring below this; the scale depends on mode: hybrid 0-1, comparable across "
                f"queries ({SUGGESTED_MIN_SCORE} drops off-topic matches), dense cosine, lexical raw BM25"
            ),
        ] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page", max_length=2000)] = None,
    ) -> SearchResult:
        """Search the knowledge base; one hit per document (its best chunk), best first, with title, text, score
        and provenance. Pass next_cursor back for the next page. Then call get_document for a full document."""
        deps = _deps(ctx)
        limit = limit or deps.aidb.search_limit
        request = SearchRequest(query, mode, limit, project_to_read(project), kind, filters, min_score, cursor)
        return await deps.searcher.search(request)

    @server.tool("get_document", annotations=READ_ONLY)
    async def get_document(document_id: DocId, ctx: Context[AidbDeps, Any]) -> Document:
        """A stored document with its full content and metadata."""
        return await documents.get_document(_deps(ctx).database, document_id)

    @server.tool("list_documents", annotations=READ_ONLY)
    async def list_documents(
        ctx: Context[AidbDeps, Any],
        project: ReadProject = None,
        kind: Annotated[Kind | None, Field(description="only documents of this kind")] = None,
        limit: Annotated[int, Field(description="documents per page", ge=1, le=200, strict=True)] = 50,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page", max_length=2000)] = None,
    ) -> DocumentList:
        """Stored documents, newest first, without content; pass next_cursor back for the next page."""
        request = ListRequest(limit, project_to_read(project), kind, cursor)
        return await documents.list_documents(_deps(ctx).database, request)

    @server.tool("delete_document", annotations=DESTRUCTIVE)
    async def delete_document(document_id: DocId, ctx: Context[AidbDeps, Any]) -> DeleteResult:
        """Delete a document and its chunks; search never returns it once this returns. Repeating it is harmless:
        a document already gone comes back with `deleted: false`."""
        deps = _deps(ctx)
        result = await documents.delete_document(deps.database, deps.indexer, document_id)
        await notify.documents_changed(server.fanout, [result.document_id] if result.deleted else [])
        return result

    @server.tool("stats", annotations=READ_ONLY)
    async def stats(ctx: Context[AidbDeps, Any]) -> StatsResult:
        """Counts of documents, chunks (stored and indexed), pending index work, projects, registered tools and
        cache hits, and which engines serve them. Cheap; call any time."""
        return await collect_stats(_deps(ctx))

    @server.tool("reindex", annotations=IDEMPOTENT_WRITE, scope="admin")
    async def reindex(
        ctx: Context[AidbDeps, Any],
        project: ReindexProject = None,
        reembed: Annotated[
            bool,
            Field(
                description="first embed again the chunks and tools another embedding model made (see "
                "stats.chunks_by_embedder); progress is reported per page"
            ),
        ] = False,
    ) -> ReindexResult:
        """Rebuild the vector index from PostgreSQL (all projects, or one). Admin only; searches may miss
        documents until it returns."""
        deps = _deps(ctx)
        reembedded = 0
        if reembed:

            async def progress(done: int) -> None:
                await ctx.report_progress(done, None, f"{done} embeddings replaced")

            reembedded = await embed_again(deps.database, deps.embedder, project=project, progress=progress)

        async def rebuilt(done: int, total: int) -> None:
            await ctx.report_progress(done, total, f"{done} of {total} chunks indexed")

        docs, chunks, tools, cleared = await indexer.rebuild(
            deps.database, deps.vectors, deps.settings.embedder.dimension, project=project, progress=rebuilt
        )
        return ReindexResult(documents=docs, chunks=chunks, tools=tools, pending_applied=cleared, reembedded=reembedded)

    @server.tool("register_mcp_server", annotations=OPEN_WORLD, scope="admin")
    async def register_mcp_server(
        name: Annotated[
            str,
            Field(
                description="short unique name", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
            ),
        ],
        ctx: Context[AidbDeps, Any],
        url: Annotated[
            str | None,
            Field(
                description="Streamable HTTP endpoint, e.g. http://127.0.0.1:8802/mcp; its host must be in "
                "aidb.allowed_peer_hosts (default: loopback) or be a configured peer's",
                max_length=2000,
            ),
        ] = None,
    ) -> RegisteredServer:
        """Connect to an MCP server at a URL, index its tools for find_tools and remember it. Call with only the
        name to re-index a registered server or to index a stdio server the operator configured by name (stdio
        servers come only from the aidb.register_servers setting). Admin only."""
        deps = _deps(ctx)
        return await discovery.register_server(
            deps.database, deps.vectors, deps.embedder, name, url=url, targets=discovery.Targets.of(deps.aidb)
        )

    @server.tool("find_tools", annotations=READ_ONLY)
    async def find_tools(
        query: Annotated[
            str, Field(description="the task you need a tool for", min_length=1, max_length=MAX_QUERY_CHARS)
        ],
        ctx: Context[AidbDeps, Any],
        limit: Annotated[int, Field(description="how many tools", ge=1, le=50, strict=True)] = 5,
        server_name: Annotated[str | None, Field(description="only this registered server", max_length=100)] = None,
    ) -> FindToolsResult:
        """The tools that best fit a task, AIDB's own (server `aidb`) and every registered server's, with their
        input schemas, best first."""
        deps = _deps(ctx)
        return await discovery.find_tools(
            deps.database, deps.vectors, deps.embedder, query, limit=limit, server=server_name
        )

    @server.resource(
        "aidb://documents/{document_id}",
        name="document",
        description="A stored document with content and metadata (JSON)",
    )
    async def document_resource(document_id: str, ctx: Context[AidbDeps, Any]) -> str:
        return await prompts.document_json(_deps(ctx).database, document_id)

    @server.resource("aidb://projects", name="projects", description="Projects and their document counts (JSON)")
    async def projects_resource() -> str:
        # Static resources get no Context in the SDK; the server's open dependencies serve instead.
        return await prompts.projects_json(server.deps.database)

    @server.prompt(
        "answer_with_sources", description="Answer a question from the knowledge base, citing the sources as [n]"
    )
    async def answer_with_sources(question: str, ctx: Context[AidbDeps, Any], project: str | None = None) -> str:
        return await prompts.cited_answer(_deps(ctx).searcher, question, project_to_read(project))

    @server.complete("answer_with_sources", "project")
    async def complete_project(prefix: str, limit: int) -> list[str]:
        return await completions.project_names(server.deps.database, prefix, limit)

    @server.complete("aidb://documents/{document_id}", "document_id")
    async def complete_document_id(prefix: str, limit: int) -> list[str]:
        return await completions.document_ids(server.deps.database, prefix, limit)

    return server
