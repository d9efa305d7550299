"""Issue 16 over real MCP: one project rule, ingest_path on HTML, PDF and compressed text with progress messages
and a skipped summary, AIDB's own tools in find_tools, and chunks missing from the index reindexed at start."""

import bz2
import gzip
import logging
import lzma
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.ingest import SKIPPED_EXAMPLES
from mcp_servers.aidb.pdf import DAMAGED, ENCRYPTED, NO_TEXT
from mcp_servers.aidb.points import CHUNKS_COLLECTION
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.aidb.conftest import structured
from tests.pdfs import encrypted, pdf_bytes
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PAGE = """<!doctype html><html><head><title>Deploy guide</title><style>body { color: red }</style>
<script>var tracking = "pixel";</script></head><body><nav><ul><li>Home</li></ul></nav>
<h1>Deploying</h1><p>Run <code>make deploy</code> after the &amp; checks pass.</p>
<h2>Rollback</h2><p>Use the previous release tag.</p></body></html>"""


async def search(client: Client, query: str, **extra: Any) -> list[dict[str, Any]]:
    hits = structured(await client.call_tool("search", {"query": query, **extra}))["hits"]
    assert isinstance(hits, list)
    return hits


async def test_store_search_and_list_share_one_project_rule(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        plain = structured(await client.call_tool("store_document", {"content": "# Venv\nUse python -m venv."}))
        other = structured(
            await client.call_tool("store_document", {"content": "# Snakes\nA python in the garden.", "project": "zoo"})
        )
        assert [h["document_id"] for h in await search(client, "python", mode="lexical")] == [plain["document_id"]]
        assert [h["document_id"] for h in await search(client, "python", mode="lexical", project="zoo")] == [
            other["document_id"]
        ]
        everywhere = {h["document_id"] for h in await search(client, "python", mode="lexical", project="*")}
        assert everywhere == {plain["document_id"], other["document_id"]}
        listed = structured(await client.call_tool("list_documents", {}))["documents"]
        assert [d["id"] for d in listed] == [plain["document_id"]]
        assert len(structured(await client.call_tool("list_documents", {"project": "*"}))["documents"]) == 2
        star = await client.call_tool("store_document", {"content": "x", "project": "*"})
        assert star.is_error and "only for reading" in star.content[0].text  # type: ignore[union-attr]


async def test_ingest_path_reads_html_and_compressed_text_and_summarises_skips(
    aidb_server: StackServer[AidbDeps], roots: Path
) -> None:
    docs = roots / "site"
    docs.mkdir()
    (docs / "deploy.html").write_text(PAGE, encoding="utf-8")
    (docs / "notes.md.gz").write_bytes(gzip.compress(b"# Notes\nThe gzip notes mention the aurora codeword."))
    (docs / "log.txt.bz2").write_bytes(bz2.compress(b"bzip2 text about the nebula codeword"))
    (docs / "readme.md.xz").write_bytes(lzma.compress(b"xz text about the quasar codeword"))
    (docs / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * (64 * 1024 + 10)))  # over the 64 KB limit unpacked
    (docs / "paper.pdf").write_bytes(b"%PDF-1.7\n%binary\n")
    for number in range(SKIPPED_EXAMPLES + 3):
        (docs / f"image{number}.bin").write_bytes(b"\x00\x01binary")
    messages: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        assert message
        messages.append(message)

    async with Client(aidb_server.mcp) as client:
        result = structured(
            await client.call_tool("ingest_path", {"path": "site", "project": "web"}, progress_callback=on_progress)
        )
        assert result["created"] == 4
        skipped = result["skipped"]
        assert skipped["total"] == SKIPPED_EXAMPLES + 5
        assert skipped["by_reason"]["binary file"] == SKIPPED_EXAMPLES + 3
        assert any("once decompressed" in reason for reason in skipped["by_reason"])
        assert skipped["by_reason"][DAMAGED] == 1  # paper.pdf is a header and nothing else
        assert len(skipped["examples"]) == SKIPPED_EXAMPLES
        assert messages[-1].startswith(f"{result['files_seen']} of {result['files_seen']} files: 4 new")

        [page] = await search(client, "how do I deploy", project="web", mode="lexical")
        assert page["title"] == "Deploy guide"
        document = structured(await client.call_tool("get_document", {"document_id": page["document_id"]}))
        content = document["content"]
        assert "# Deploying" in content and "## Rollback" in content and "make deploy after the & checks" in content
        assert "<" not in content and "tracking" not in content and "color" not in content
        for word in ("aurora", "nebula", "quasar"):
            [hit] = await search(client, word, project="web", mode="lexical")
            assert word in hit["text"]


async def test_ingest_path_extracts_pdf_text_and_counts_unreadable_pdfs(
    aidb_server: StackServer[AidbDeps], roots: Path
) -> None:
    papers = roots / "papers"
    papers.mkdir()
    report = pdf_bytes(["Quarterly report", "The zephyr codeword opens page one."], ["Page two mentions the fjord."])
    (papers / "report.pdf").write_bytes(report)
    (papers / "titled.pdf").write_bytes(pdf_bytes(["Body about the tundra codeword."], title="Field notes"))
    (papers / "locked.pdf").write_bytes(encrypted(report, user_password="secret"))
    (papers / "truncated.pdf").write_bytes(report[: len(report) // 2])
    (papers / "scan.pdf").write_bytes(pdf_bytes([]))
    (papers / "scan2.pdf").write_bytes(pdf_bytes([], []))

    async with Client(aidb_server.mcp) as client:
        result = structured(await client.call_tool("ingest_path", {"path": "papers", "project": "pdf"}))
        assert (result["files_seen"], result["created"]) == (6, 2)
        assert result["skipped"]["by_reason"] == {ENCRYPTED: 1, DAMAGED: 1, NO_TEXT: 2}

        [hit] = await search(client, "zephyr", project="pdf", mode="lexical")
        assert hit["title"] == "Quarterly report"
        document = structured(await client.call_tool("get_document", {"document_id": hit["document_id"]}))
        assert (
            document["content"]
            == "Quarterly report\nThe zephyr codeword opens page one.\n\nPage two mentions the fjord."
        )
        best = (await search(client, "fjord", project="pdf"))[0]  # hybrid, the default: page two's words rank it first
        assert best["document_id"] == hit["document_id"]
        [tundra] = await search(client, "tundra", project="pdf", mode="lexical")
        assert tundra["title"] == "Field notes"

        again = structured(await client.call_tool("ingest_path", {"path": "papers", "project": "pdf"}))
        assert (again["created"], again["unchanged"]) == (0, 2)


async def test_find_tools_finds_aidbs_own_tools(aidb_server: StackServer[AidbDeps]) -> None:
    async with Client(aidb_server.mcp) as client:
        found = structured(
            await client.call_tool("find_tools", {"query": "delete a stored document by its id", "limit": 3})
        )
    assert ("aidb", "delete_document") in [(tool["server"], tool["name"]) for tool in found["tools"]]
    tool = next(tool for tool in found["tools"] if tool["name"] == "delete_document")
    assert tool["input_schema"]["required"] == ["document_id"]


async def test_a_start_reindexes_chunks_missing_from_the_index(
    aidb_settings: StackSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_servers.aidb.indexer")
    first = create_server(build_core("aidb", aidb_settings))
    async with Client(first.mcp) as client:
        for number in range(3):
            structured(await client.call_tool("store_document", {"content": f"# Memo {number}\nglacier{number}"}))
        # What a restore without vectors leaves: PostgreSQL holds the chunks, the index does not.
        await first.deps.vectors.drop(CHUNKS_COLLECTION)
    second = create_server(build_core("aidb", aidb_settings))
    async with Client(second.mcp) as client:

        async def caught_up() -> bool:
            stats = structured(await client.call_tool("stats", {}))
            return bool(stats["chunks_indexed"] == stats["chunks"] == 3)

        await wait_until(caught_up, timeout=60)
        assert [h["title"] for h in await search(client, "glacier1", mode="lexical")] == ["Memo 1"]
    progress = [r for r in caplog.records if r.getMessage() == "reindexing chunks"]
    assert progress and getattr(progress[-1], "chunks_done", None) == 3
