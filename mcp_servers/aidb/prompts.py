"""Resource bodies and prompt texts: documents and projects as JSON, and a question answered with cited sources."""

from mcp_servers.aidb import documents, store
from mcp_servers.aidb.models import ProjectList, SearchRequest
from mcp_servers.aidb.search import Searcher
from mcp_servers.shared.postgres.pool import Database

CITED_SOURCES = 5
_EXCERPT_CHARS = 1200


async def document_json(database: Database, document_id: str) -> str:
    """The document (with content) as JSON; NotFound if absent."""
    return (await documents.get_document(database, document_id)).model_dump_json()


async def projects_json(database: Database) -> str:
    """Every project and its document count as JSON."""
    return ProjectList(projects=await store.projects(database)).model_dump_json()


async def cited_answer(searcher: Searcher, question: str, project: str | None) -> str:
    """A prompt that gives the model the best sources for `question`, numbered, and asks for cited claims."""
    result = await searcher.search(SearchRequest(query=question, mode="hybrid", limit=CITED_SOURCES, project=project))
    if not result.hits:
        return (
            f"Question: {question}\n\nThe knowledge base has no document about this. Say so plainly, and answer only "
            "from general knowledge if you mark it as such."
        )
    sources = []
    for number, hit in enumerate(result.hits, start=1):
        origin = hit.provenance.source or f"aidb://documents/{hit.document_id}"
        excerpt = hit.text[:_EXCERPT_CHARS]
        sources.append(f"[{number}] {hit.title} ({origin})\n{excerpt}")
    joined = "\n\n".join(sources)
    return (
        "Answer the question using only the sources below. After each claim, cite its source as [n]. "
        "If the sources do not answer the question, say what is missing instead of guessing.\n\n"
        f"Sources:\n\n{joined}\n\nQuestion: {question}"
    )
