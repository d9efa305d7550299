"""AIDB over real MCP: every tool, resource and prompt, against Qdrant Edge and qdrant-client local mode."""

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError
from mcp_types import INVALID_PARAMS
from tokenizers import Tokenizer

from mcp_servers.aidb import documents
from mcp_servers.aidb import store as aidb_store
from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.models import StoreRequest
from mcp_servers.aidb.points import CHUNKS_COLLECTION, index_text
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.embeddings.provision import model_dir_for
from mcp_servers.shared.harness import StackServer, build_core
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED
from tests.integration.aidb.conftest import Connect, over_http, structured
from tests.integration.test_harness import issue_key
from tests.support import http_client, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOOLS = {
    "store_document",
    "ingest_path",
    "search",
    "get_document",
    "list_documents",
    "delete_document",
    "stats",
    "reindex",
    "register_mcp_server",
    "find_tools",
}

FOX = "# Foxes\nThe quick brown fox jumps over the lazy dog near the riverbank."
PYTHON = "# Python packaging\nUse pyproject.toml with setuptools to build a wheel of your package."


def error_text(result: Any) -> str:
    """The message of a tool error."""
    assert result.is_error
    return str(result.content[0].text)


async def store(client: Client, content: str, **extra: Any) -> dict[str, Any]:
    return structured(await client.call_tool("store_document", {"content": content, **extra}))


async def search(client: Client, query: str, **extra: Any) -> dict[str, Any]:
    return structured(await client.call_tool("search", {"query": query, **extra}))


async def test_document_lifecycle_over_every_transport(aidb_server: StackServer[AidbDeps], connect: Connect) -> None:
    async with connect(aidb_server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == TOOLS
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert "aidb://documents/{document_id}" in templates
        assert "aidb://projects" in [str(r.uri) for r in (await client.list_resources()).resources]
        assert "answer_with_sources" in [p.name for p in (await client.list_prompts()).prompts]

        fox = await store(client, FOX, project="zoo", metadata={"lang": "en"})
        assert fox["status"] == "created" and fox["indexed"] and fox["chunks"] == 1
        python = await store(client, PYTHON, project="dev", kind="best_practice")

        duplicate = await store(client, FOX + "\r\n\r\n", project="zoo")
        assert duplicate["status"] == "duplicate"
        assert duplicate["document_id"] == fox["document_id"]
        # The same content in another project is another document.
        assert (await store(client, FOX, project="other"))["status"] == "created"

        hits = (await search(client, "brown fox jumping", project="zoo"))["hits"]
        assert [h["document_id"] for h in hits] == [fox["document_id"]]
        hit = hits[0]
        assert hit["title"] == "Foxes"
        assert "quick brown fox" in hit["text"]
        assert hit["metadata"] == {"lang": "en"}
        assert hit["provenance"]["project"] == "zoo" and hit["provenance"]["start_line"] == 1

        document = structured(await client.call_tool("get_document", {"document_id": python["document_id"]}))
        assert document["content"] == PYTHON and document["kind"] == "best_practice"
        resource = await client.read_resource(f"aidb://documents/{python['document_id']}")
        assert json.loads(resource.contents[0].text)["title"] == "Python packaging"  # type: ignore[union-attr]
        projects = json.loads((await client.read_resource("aidb://projects")).contents[0].text)  # type: ignore[union-attr]
        assert {p["project"]: p["documents"] for p in projects["projects"]} == {"dev": 1, "other": 1, "zoo": 1}

        prompt = await client.get_prompt(
            "answer_with_sources", {"question": "how do I build a wheel?", "project": "dev"}
        )
        text = prompt.messages[0].content.text  # type: ignore[union-attr]
        assert "[1] Python packaging" in text and "cite" in text

        listed = structured(await client.call_tool("list_documents", {"project": "zoo"}))
        assert [d["id"] for d in listed["documents"]] == [fox["document_id"]]

        deleted = structured(await client.call_tool("delete_document", {"document_id": fox["document_id"]}))
        assert deleted == {"document_id": fox["document_id"], "deleted": True}
        assert (await search(client, "brown fox jumping", project="zoo"))["hits"] == []
        for mode in ("dense", "lexical", "hybrid"):
            found = await search(client, "quick brown fox", mode=mode)
            assert fox["document_id"] not in {h["document_id"] for h in found["hits"]}
        assert "no document" in error_text(await client.call_tool("get_document", {"document_id": fox["document_id"]}))
        again = structured(await client.call_tool("delete_document", {"document_id": fox["document_id"]}))
        assert again == {"document_id": fox["document_id"], "deleted": False}  # idempotent, as annotated
        with pytest.raises(MCPError) as missing:
            await client.read_resource(f"aidb://documents/{fox['document_id']}")
        assert missing.value.code == INVALID_PARAMS

        stats = structured(await client.call_tool("stats", {}))
        assert stats["documents"] == 2 and stats["chunks"] == 2 and stats["chunks_indexed"] == 2
        assert stats["pending_index"] == 0 and stats["projects"] == 2
        assert stats["documents_by_kind"] == {"doc": 1, "best_practice": 1}


async def test_new_content_for_a_known_source_updates_the_document(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        first = await store(client, "alpha version about zebras", source="notes/animals.txt")
        second = await store(client, "beta version about giraffes", source="notes/animals.txt")
        assert second["status"] == "updated"
        assert second["document_id"] == first["document_id"]
        assert (await search(client, "zebras", mode="lexical"))["hits"] == []
        hits = (await search(client, "giraffes", mode="lexical"))["hits"]
        assert [h["text"] for h in hits] == ["beta version about giraffes"]
        document = structured(await client.call_tool("get_document", {"document_id": first["document_id"]}))
        assert document["version"] == 2
        stats = structured(await client.call_tool("stats", {}))
        assert stats["chunks_indexed"] == stats["chunks"] == 1


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
async def test_pagination_over_pages_has_no_duplicates_or_gaps(aidb_server: StackServer[AidbDeps], mode: str) -> None:
    async with Client(aidb_server.mcp) as client:
        stored = set()
        for i in range(23):
            result = await store(client, f"Gardening note {i}: tomatoes need sun, water and compost ({i * 7919}).")
            stored.add(result["document_id"])
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await search(
                client, "tomatoes compost", mode=mode, limit=5, **({"cursor": cursor} if cursor else {})
            )
            pages += 1
            seen.extend(h["document_id"] for h in page["hits"])
            scores = [h["score"] for h in page["hits"]]
            assert scores == sorted(scores, reverse=True)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages >= 5
        assert len(seen) == len(set(seen)) == 23
        assert set(seen) == stored


async def test_pages_stay_consistent_when_documents_change_between_pages(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        ids = [
            (await store(client, f"Recipe {i}: bake the bread dough for {i + 20} minutes"))["document_id"]
            for i in range(12)
        ]
        first = await search(client, "bake bread dough", mode="lexical", limit=4)
        await store(client, "Recipe extra: bread dough bake bake bake")
        rest: list[str] = []
        cursor = first["next_cursor"]
        while cursor:
            page = await search(client, "bake bread dough", mode="lexical", limit=4, cursor=cursor)
            rest.extend(h["document_id"] for h in page["hits"])
            cursor = page["next_cursor"]
        seen = [h["document_id"] for h in first["hits"]] + rest
        assert len(seen) == len(set(seen))
        assert set(ids) <= set(seen)


async def test_list_documents_pages_newest_first(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        ids = [(await store(client, f"memo number {i}", kind="note", project="memos"))["document_id"] for i in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"project": "memos", "kind": "note", "limit": 3}
            if cursor:
                args["cursor"] = cursor
            page = structured(await client.call_tool("list_documents", args))
            seen.extend(d["id"] for d in page["documents"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        assert structured(await client.call_tool("list_documents", {"project": "nobody"}))["documents"] == []


async def test_filters_by_project_kind_and_metadata(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        a = await store(
            client,
            "retry the request with exponential backoff",
            project="api",
            kind="best_practice",
            metadata={"team": "core", "priority": 1},
        )
        b = await store(
            client, "def retry(request): backoff exponentially", project="api", kind="code", metadata={"team": "web"}
        )
        c = await store(
            client, "retry failed uploads with backoff", project="ops", kind="error_solution", metadata={"team": "core"}
        )

        async def ids(**args: Any) -> set[str]:
            return {h["document_id"] for h in (await search(client, "retry backoff", **args))["hits"]}

        assert await ids(project="*") == {a["document_id"], b["document_id"], c["document_id"]}
        assert await ids() == set()  # no project = "default", where nothing was stored
        assert await ids(project="api") == {a["document_id"], b["document_id"]}
        assert await ids(kind="code", project="*") == {b["document_id"]}
        assert await ids(project="api", kind="error_solution") == set()
        assert await ids(filters={"team": "core"}, project="*") == {a["document_id"], c["document_id"]}
        assert await ids(filters={"team": ["web", "nobody"]}, project="*") == {b["document_id"]}
        assert await ids(filters={"priority": 1}, project="*") == {a["document_id"]}
        assert "filter key" in error_text(await client.call_tool("search", {"query": "x", "filters": {"bad key": "v"}}))


async def test_min_score_drops_weak_hits(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        await store(client, "PostgreSQL vacuum reclaims dead tuples")
        await store(client, "Sourdough starter needs flour and water")
        everything = await search(client, "postgres vacuum dead tuples", mode="dense", limit=10)
        assert len(everything["hits"]) == 2
        top = everything["hits"][0]["score"]
        strict = await search(client, "postgres vacuum dead tuples", mode="dense", min_score=top - 1e-6)
        assert [h["text"] for h in strict["hits"]] == ["PostgreSQL vacuum reclaims dead tuples"]


async def test_bad_queries_cursors_and_documents_are_refused_clearly(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        assert "empty" in error_text(await client.call_tool("search", {"query": "   "}))
        huge = error_text(await client.call_tool("search", {"query": "x" * 5000}))
        assert "\nquery\n" in huge and "[type=string_too_long," in huge  # refused by the declared max_length
        assert "no searchable words" in error_text(
            await client.call_tool("search", {"query": "the and of", "mode": "lexical"})
        )
        assert "cursor" in error_text(await client.call_tool("search", {"query": "x", "cursor": "garbage"}))
        await store(client, "one two three")
        await store(client, "one two four")
        page = await search(client, "one two", limit=1)
        assert page["next_cursor"]
        other = await client.call_tool("search", {"query": "different", "cursor": page["next_cursor"]})
        assert "different query" in error_text(other)
        limit = aidb_server.core.settings.aidb.max_document_bytes
        oversized = await client.call_tool("store_document", {"content": "a" * (limit + 1)})
        assert "limit" in error_text(oversized) and str(limit) in error_text(oversized)
        assert "empty" in error_text(await client.call_tool("store_document", {"content": " \n\t "}))
        assert "no document" in error_text(await client.call_tool("get_document", {"document_id": "not-a-uuid"}))


async def test_search_cache_hits_until_a_write(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        await store(client, "caching avoids recomputing rankings")
        first = await search(client, "caching rankings")
        second = await search(client, "caching rankings")
        assert (first["cached"], second["cached"]) == (False, True)
        assert first["hits"] == second["hits"]
        await store(client, "rankings change after a write")
        third = await search(client, "caching rankings")
        assert not third["cached"]
        assert len(third["hits"]) == 2
        stats = structured(await client.call_tool("stats", {}))
        assert stats["cache_hits"] >= 1 and stats["cache_misses"] >= 2


async def test_reindex_rebuilds_the_index_from_postgres(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        stored = [(await store(client, f"Chapter {i} of the lighthouse keeper's log"))["document_id"] for i in range(5)]
        deps = aidb_server.deps
        await deps.vectors.drop(CHUNKS_COLLECTION)
        await deps.vectors.ensure_collection(CHUNKS_COLLECTION, 384)
        assert (await search(client, "lighthouse keeper", mode="lexical"))["hits"] == []
        result = structured(await client.call_tool("reindex", {}))
        assert result["documents"] == 5 and result["chunks"] == 5
        hits = (await search(client, "lighthouse keeper", mode="lexical", limit=10))["hits"]
        assert sorted(h["document_id"] for h in hits) == sorted(stored)
        assert structured(await client.call_tool("reindex", {"project": "default"}))["chunks"] == 5
        stats = structured(await client.call_tool("stats", {}))
        assert stats["chunks_indexed"] == 5


async def test_reindex_reembeds_what_another_model_embedded(aidb_settings: StackSettings) -> None:
    shipped = aidb_settings.model_copy(
        update={"embedder": aidb_settings.embedder.model_copy(update={"onnx_model": "weight-int8"})}
    )
    old_server = create_server(build_core("aidb", shipped))
    async with Client(old_server.mcp) as client:
        for i in range(3):
            await store(client, f"# Beacon {i}\nThe harbour beacon number {i} blinks twice at dusk.")
        old_name = structured(await client.call_tool("stats", {}))["embedder"]
    server = create_server(build_core("aidb", aidb_settings))  # the default model, on the same data
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with Client(server.mcp) as client:
        await store(client, FOX)
        stats = structured(await client.call_tool("stats", {}))
        assert stats["embedder"] != old_name
        assert stats["chunks_by_embedder"] == {old_name: 3, stats["embedder"]: 1}
        result = structured(await client.call_tool("reindex", {"reembed": True}, progress_callback=on_progress))
        # 3 re-embedded, then the rebuild: 0 and 4 of 4 chunks.
        assert (result["reembedded"], result["chunks"]) == (3, 4) and progress == [3, 0, 4]
        stats = structured(await client.call_tool("stats", {}))
        assert stats["chunks_by_embedder"] == {stats["embedder"]: 4}
        assert stats["chunks_indexed"] == 4
        hits = (await search(client, "harbour beacon blinking at dusk", mode="dense"))["hits"]
        assert hits[0]["title"].startswith("Beacon")
        assert structured(await client.call_tool("reindex", {"reembed": True}))["reembedded"] == 0


async def test_admin_tools_need_the_admin_scope(aidb_server: StackServer[AidbDeps]) -> None:
    async with over_http("2026-07-28", ["read", "write"])(aidb_server) as client:
        assert not (await client.call_tool("stats", {})).is_error
        with pytest.raises(MCPError) as refused:
            await client.call_tool("reindex", {})
        assert refused.value.code == PERMISSION_DENIED


async def test_ingest_path_stores_updates_skips_and_reports_progress(
    aidb_server: StackServer[AidbDeps], roots: Path
) -> None:
    docs = roots / "docs"
    (docs / "deep").mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\nInstall with pip.\n\n## Usage\nRun the tool daily.", encoding="utf-8")
    (docs / "deep" / "notes.md").write_text("# Notes\nMeeting notes about the roadmap.", encoding="utf-8")
    (docs / "script.py").write_text("def main():\n    print('hi')\n", encoding="utf-8")
    (docs / "image.md").write_bytes(b"\x89PNG\x00\x00binary")
    (docs / "big.md").write_text("x" * (64 * 1024 + 1), encoding="utf-8")
    outside = roots.parent / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\ntop secret", encoding="utf-8")
    os.symlink(outside / "secret.md", docs / "leak.md")
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with Client(aidb_server.mcp) as client:
        first = structured(
            await client.call_tool(
                "ingest_path", {"path": "docs", "glob": "*.md", "project": "kb"}, progress_callback=on_progress
            )
        )
        assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
        assert first["skipped"]["total"] == 3 and sum(first["skipped"]["by_reason"].values()) == 3
        reasons = {s["path"]: s["reason"] for s in first["skipped"]["examples"]}
        assert set(reasons) == {"image.md", "big.md", "leak.md"}
        assert "binary" in reasons["image.md"]
        assert "limit" in reasons["big.md"]
        assert "outside" in reasons["leak.md"]
        assert progress[-1] == (4, 4)
        assert (await search(client, "roadmap meeting", project="kb"))["hits"][0]["title"] == "deep/notes.md"
        assert "top secret" not in json.dumps(await search(client, "secret", project="kb"))

        (docs / "guide.md").write_text("# Guide\nInstall with uv instead.", encoding="utf-8")
        second = structured(
            await client.call_tool("ingest_path", {"path": str(docs), "glob": "**/*.md", "project": "kb"})
        )
        assert (second["created"], second["updated"], second["unchanged"]) == (0, 1, 1)
        hits = (await search(client, "install", project="kb", mode="lexical"))["hits"]
        assert [h["text"] for h in hits] == ["# Guide\nInstall with uv instead."]

        code = structured(await client.call_tool("ingest_path", {"path": "docs/script.py", "project": "kb"}))
        assert code["created"] == 1
        assert (await search(client, "main print", kind="code", project="kb"))["hits"][0]["provenance"][
            "kind"
        ] == "code"


async def test_ingest_path_stores_many_files_in_batches(
    aidb_server: StackServer[AidbDeps], roots: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_servers.aidb.ingest")  # its summary line once broke the tool
    notes = roots / "notes"
    notes.mkdir()
    for i in range(70):
        (notes / f"note{i:02}.md").write_text(
            f"# Note {i}\nRemember item number {i} of the inventory.", encoding="utf-8"
        )
    (notes / "copy.md").write_text("# Note 3\nRemember item number 3 of the inventory.", encoding="utf-8")
    (notes / "known.md").write_text(FOX, encoding="utf-8")
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        assert total == 72
        progress.append(done)

    async with Client(aidb_server.mcp) as client:
        await store(client, FOX)
        result = structured(
            await client.call_tool("ingest_path", {"path": "notes", "glob": "*.md"}, progress_callback=on_progress)
        )
        # copy.md repeats note03.md within the same batch; known.md repeats a document stored before.
        assert (result["created"], result["updated"], result["unchanged"], result["skipped"]["total"]) == (70, 0, 2, 0)
        assert len(set(result["document_ids"])) == 70
        assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 72
        assert len(progress) >= 4  # the start and one update per batch of at most 32 files
        stats = structured(await client.call_tool("stats", {}))
        assert (stats["documents"], stats["chunks"]) == (71, 71)
        assert await aidb_server.deps.vectors.count(CHUNKS_COLLECTION) == 71
        hits = (await search(client, "item number 57 of the inventory", mode="lexical", limit=1))["hits"]
        assert hits[0]["title"] == "note57.md"
    assert any(record.getMessage() == "ingest finished" for record in caplog.records)


async def test_a_conflict_in_a_batch_costs_only_that_document(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        stored = await store(client, FOX)
        deps = aidb_server.deps
        fresh = await documents.prepare_document(deps, StoreRequest(PYTHON))
        # Same id as the stored document, other content: its INSERT finds the row taken, as a concurrent write would.
        clash = await documents.prepare_document(deps, StoreRequest("# Clash\nAnother text entirely."))
        clash = replace(clash, document=replace(clash.document, id=stored["document_id"]))
        results = await documents.store_documents(deps, [fresh, clash])
        assert results[1] is None
        assert results[0] is not None and results[0].status == "created" and results[0].indexed
        assert (await search(client, "pyproject wheel", mode="lexical"))["hits"][0]["document_id"] == (
            results[0].document_id
        )
        assert structured(await client.call_tool("stats", {}))["documents"] == 2


@pytest.mark.parametrize(
    "path", ["../outside", "docs/../../outside", "/etc", "/etc/passwd", "linkdir", "linkdir/secret.md"]
)
async def test_ingest_path_refuses_escapes(aidb_server: StackServer[AidbDeps], roots: Path, path: str) -> None:
    (roots / "docs").mkdir()
    outside = roots.parent / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret", encoding="utf-8")
    os.symlink(outside, roots / "linkdir")
    async with Client(aidb_server.mcp) as client:
        result = await client.call_tool("ingest_path", {"path": path})
        message = error_text(result)
        assert "outside the allowed roots" in message or "'..'" in message
        assert structured(await client.call_tool("stats", {}))["documents"] == 0


async def test_ingest_path_of_a_missing_path_is_a_tool_error(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        assert "does not exist" in error_text(await client.call_tool("ingest_path", {"path": "nope"}))


async def test_cache_hits_misses_and_pool_usage_are_exported_as_metrics(aidb_server: StackServer[AidbDeps]) -> None:
    _, token = await issue_key(aidb_server.core.settings, ["read", "write"])
    async with serve_app(aidb_server.http_app()) as url:
        async with http_client(url, token) as client:
            await store(client, "metrics make caches observable")
            await search(client, "caches observable")
            await search(client, "caches observable")
        async with httpx.AsyncClient() as raw:
            metrics = (await raw.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert 'mcpstack_query_cache_requests_total{result="hit"} 1.0' in metrics
    assert 'mcpstack_query_cache_requests_total{result="miss"} 1.0' in metrics
    assert "mcpstack_db_pool_connections" in metrics


async def test_the_model_reads_every_chunk_whole(aidb_server: StackServer[AidbDeps]) -> None:
    # Option tables and identifiers run to ~3 characters a token: 200-"token" windows of ~800 characters are
    # longer than the 256 tokens the model reads, and their ends used to be cut off before embedding.
    lines = [
        f"--opt-{i:03d}=<VALUE>  set cfg.section_{i}[key_{i}] (default 0x{i:04X}); see foo::bar_{i}()"
        for i in range(300)
    ]
    async with Client(aidb_server.mcp) as client:
        settings = aidb_server.deps.settings
        result = await store(client, "\n".join(lines), title="Option reference", source="options.txt")
        chunks = await aidb_store.all_chunks(aidb_server.deps.database, project=None, after=None, limit=1000)
    assert len(chunks) == result["chunks"]
    tokenizer = Tokenizer.from_file(str(model_dir_for(settings.embedder) / "tokenizer.json"))
    tokenizer.no_truncation()  # tokenizer.json itself cuts at 128 tokens
    longest = max(len(tokenizer.encode(index_text(chunk.title, chunk.text)).ids) for chunk in chunks)
    assert longest <= settings.embedder.max_tokens
    stored = " ".join(chunk.text for chunk in chunks)
    assert all(f"foo::bar_{i}()" in stored for i in range(300))


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
async def test_search_with_the_vector_index_down_is_a_clear_tool_error(
    aidb_server: StackServer[AidbDeps], mode: str
) -> None:
    async with Client(aidb_server.mcp) as client:
        await store(client, FOX)
        await aidb_server.deps.vectors.close()
        result = await client.call_tool("search", {"query": "quick brown fox", "mode": mode})
        assert "unavailable" in error_text(result)


async def test_search_with_the_embedder_down_fails_only_where_the_vector_is_needed(
    aidb_server: StackServer[AidbDeps],
) -> None:
    async with Client(aidb_server.mcp) as client:
        await store(client, FOX)
        await aidb_server.deps.embedder.close()
        for mode in ("hybrid", "dense"):
            result = await client.call_tool("search", {"query": "quick brown fox", "mode": mode})
            assert "unavailable" in error_text(result)
        lexical = await search(client, "quick brown fox", mode="lexical")
        assert [hit["text"] for hit in lexical["hits"]] == [FOX]
