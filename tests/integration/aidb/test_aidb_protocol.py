"""AIDB's completions and change notifications over MCP, with scoped keys over HTTP and in both protocol eras.

Completions name only stored data (projects, document ids) and need `read` on AIDB; a key for another server is
refused. A stored or deleted document reaches `subscriptions/listen` streams (2026-07-28) and sessions that sent
`resources/subscribe` (2025-11-25) as a resource-updated notification.
"""

import warnings
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.server.subscriptions import ResourceUpdated
from mcp_types import PromptReference, ResourceTemplateReference, ResourceUpdatedNotification

from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from tests.integration.test_harness import issue_key
from tests.support import http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DOCUMENT = ResourceTemplateReference(uri="aidb://documents/{document_id}")
ANSWER = PromptReference(name="answer_with_sources")


@pytest.fixture
def aidb_settings(stack_settings: StackSettings) -> StackSettings:
    return stack_settings.model_copy(update={"vectors": stack_settings.vectors.model_copy(update={"backend": "edge"})})


async def store(client: Client, content: str, project: str) -> str:
    result = await client.call_tool("store_document", {"content": content, "project": project})
    assert not result.is_error, result
    assert result.structured_content is not None
    return str(result.structured_content["document_id"])


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_completions_offer_stored_projects_and_document_ids_to_readers_only(
    aidb_settings: StackSettings, mode: str
) -> None:
    _, writer = await issue_key(aidb_settings, ["aidb:write"])
    _, reader = await issue_key(aidb_settings, ["aidb:read"])
    _, foreign = await issue_key(aidb_settings, ["ralph:admin"])
    server = create_server(build_core("aidb", aidb_settings))
    async with serve_app(server.http_app()) as url:
        async with http_client(url, writer, mode=mode) as client:
            first = await store(client, "# Wheels\nround things", "physics-notes")
            await store(client, "# Levers\nlong things", "philosophy")
            await store(client, "# Pulleys\nropes", "chemistry")
        async with http_client(url, reader, mode=mode) as client:
            projects = (await client.complete(ANSWER, {"name": "project", "value": "ph"})).completion
            every_project = (await client.complete(ANSWER, {"name": "project", "value": ""})).completion
            by_id = (await client.complete(DOCUMENT, {"name": "document_id", "value": first[:6]})).completion
            not_hex = (await client.complete(DOCUMENT, {"name": "document_id", "value": "zz"})).completion
            no_completer = (await client.complete(ANSWER, {"name": "question", "value": "wh"})).completion
        async with http_client(url, foreign, mode=mode) as client:
            with pytest.raises(MCPError) as refused:
                await client.complete(ANSWER, {"name": "project", "value": ""})
    assert projects.values == ["philosophy", "physics-notes"] and projects.has_more is False
    assert every_project.values == ["chemistry", "philosophy", "physics-notes"]
    assert first in by_id.values and all(value.startswith(first[:6]) for value in by_id.values)
    assert not_hex.values == [] and no_completer.values == []
    assert refused.value.error.code == PERMISSION_DENIED


async def test_a_changed_document_reaches_listen_streams_of_the_2026_era(aidb_settings: StackSettings) -> None:
    server = create_server(build_core("aidb", aidb_settings))
    async with Client(server.mcp, mode="2026-07-28") as client:
        document_id = await store(client, "# Gears\nteeth", "mech")
        uri = f"aidb://documents/{document_id}"
        async with client.listen(resource_subscriptions=[uri, "aidb://projects"]) as subscription:
            await client.call_tool("delete_document", {"document_id": document_id})
            with anyio.fail_after(10):
                events = [await subscription.__anext__(), await subscription.__anext__()]
    assert events == [ResourceUpdated(uri=uri), ResourceUpdated(uri="aidb://projects")]


async def test_a_changed_document_reaches_legacy_subscribers(aidb_settings: StackSettings) -> None:
    server = create_server(build_core("aidb", aidb_settings))
    updated: list[str] = []
    received = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            if "aidb://projects" in updated:
                received.set()

    async with Client(server.mcp, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe
        document_id = await store(client, "# Cams\nshapes", "mech")
        uri = f"aidb://documents/{document_id}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy era is what this test covers
            await client.session.subscribe_resource(uri)
            await client.session.subscribe_resource("aidb://projects")
        await client.call_tool("store_document", {"content": "# Cams\nnew shapes", "project": "mech", "source": "x"})
        await client.call_tool("delete_document", {"document_id": document_id})
        with anyio.fail_after(10):
            await received.wait()
    assert uri in updated
