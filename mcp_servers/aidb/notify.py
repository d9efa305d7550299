"""Document changes made through this server, told to subscribed MCP clients in both protocol eras.

A stored, updated or deleted document changes `aidb://documents/{id}` and the project counts of
`aidb://projects`; both get a resource-updated notification through the harness's shared fanout. Documents are
read through a template (not listed one by one by `resources/list`), so the resource list itself never changes.
Changes made by another process (the CLI, another replica) are not relayed: clients refetch on their next read.
"""

from collections.abc import Iterable

from mcp_servers.shared.subscriptions import ResourceFanout

PROJECTS_URI = "aidb://projects"


def document_uri(document_id: str) -> str:
    return f"aidb://documents/{document_id}"


async def documents_changed(fanout: ResourceFanout, document_ids: Iterable[str]) -> None:
    """Tell subscribers of each document, and of the project list, that they changed (nothing if none did)."""
    changed = list(document_ids)
    for document_id in changed:
        await fanout.resource_updated(document_uri(document_id))
    if changed:
        await fanout.resource_updated(PROJECTS_URI)
