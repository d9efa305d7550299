"""AIDB's point schema: ids, payloads and filters agree with each other."""

from datetime import UTC, datetime

from mcp_servers.aidb.points import (
    chunk_filters,
    chunk_point,
    chunk_point_id,
    index_text,
    project_filter,
    tool_filters,
    tool_point,
    tool_point_id,
)
from mcp_servers.aidb.store import ChunkRecord, ToolRecord, pack_vector
from mcp_servers.shared.vectors.bm25 import document_vector


def _chunk(**metadata: str | int | bool) -> ChunkRecord:
    return ChunkRecord(
        point_id=chunk_point_id("proj", "ab" * 32, 3),
        document_id="doc-1",
        chunk_index=3,
        heading="Intro",
        start_line=7,
        text="chunk text about wheels",
        embedding=pack_vector([0.5, -0.25]),
        title="Packaging",
        project="proj",
        kind="doc",
        source=None,
        metadata=dict(metadata),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_chunk_point_ids_depend_only_on_project_content_and_position() -> None:
    assert chunk_point_id("proj", "h", 0) == chunk_point_id("proj", "h", 0)
    ids = {chunk_point_id("proj", "h", 0), chunk_point_id("other", "h", 0), chunk_point_id("proj", "h", 1)}
    assert len(ids) == 3
    assert tool_point_id("srv", "a_tool") != tool_point_id("srv", "b_tool")


def test_every_search_filter_names_a_payload_field_of_the_chunk_point() -> None:
    point = chunk_point(_chunk(team="infra", reviewed=True))
    filters = chunk_filters("proj", "doc", {"team": "infra", "reviewed": True})
    assert filters.items() <= point.payload.items()
    assert project_filter("proj").items() <= point.payload.items()
    assert point.payload["document_id"] == "doc-1" and point.payload["chunk_index"] == 3
    assert chunk_filters(None, None, None) == {}


def test_chunk_point_carries_the_stored_embedding_and_bm25_of_title_and_text() -> None:
    point = chunk_point(_chunk())
    assert list(point.dense) == [0.5, -0.25]
    assert point.sparse == document_vector("Packaging\nchunk text about wheels")
    assert index_text("Packaging", "Packaging: intro") == "Packaging: intro"


def test_tool_filters_select_one_server_by_the_tool_point_payload() -> None:
    tool = ToolRecord(
        server="srv",
        name="get_weather",
        title=None,
        description="Weather for a city",
        input_schema={},
        point_id=tool_point_id("srv", "get_weather"),
        embedding=pack_vector([1.0]),
    )
    point = tool_point(tool)
    assert tool_filters("srv").items() <= point.payload.items()
    assert tool_filters(None) == {}
