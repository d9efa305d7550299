"""Re-embedding: replace the stored embeddings another model made with the current embedder's.

Each chunk and tool records the embedder that produced its vector. After a model change (for instance the default
moving to the dynamic-int8 MiniLM) older rows keep their vectors; `reindex(reembed=true)` embeds those texts again,
page by page, each page committed on its own so a long run can stop and resume where it left off, then rebuilds
the index from the tables.
"""

from collections.abc import Awaitable, Callable

from mcp_servers.aidb import store
from mcp_servers.aidb.points import index_text, tool_text
from mcp_servers.shared.embeddings.port import Embedder
from mcp_servers.shared.postgres.pool import Database

ProgressCallback = Callable[[int], Awaitable[None]]

_PAGE = 256


async def reembed(
    database: Database, embedder: Embedder, *, project: str | None, progress: ProgressCallback | None = None
) -> int:
    """Embed again every chunk (of `project`, or all) and tool not embedded by `embedder`; returns how many."""
    done = 0
    after: str | None = None
    while page := await store.chunks_embedded_by_others(
        database, embedder.name, project=project, after=after, limit=_PAGE
    ):
        vectors = await embedder.embed_documents([index_text(title, text) for _, title, text in page])
        await store.replace_embeddings(
            database,
            "aidb_chunks",
            {point: vector for (point, _, _), vector in zip(page, vectors, strict=True)},
            embedder.name,
        )
        done += len(page)
        after = page[-1][0]
        if progress is not None:
            await progress(done)
    if project is None:
        tools = await store.tools_embedded_by_others(database, embedder.name)
        if tools:
            vectors = await embedder.embed_documents(
                [tool_text(tool.server, tool.name, tool.title, tool.description) for tool in tools]
            )
            await store.replace_embeddings(
                database, "aidb_tools", {t.point_id: v for t, v in zip(tools, vectors, strict=True)}, embedder.name
            )
            done += len(tools)
    return done
