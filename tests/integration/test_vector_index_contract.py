"""One contract for every VectorIndex adapter: Qdrant Edge and qdrant-client (local mode), built by the factory.

Dense vectors are hand-made 8-d "topic" vectors, so rankings are predictable without a model. After the shared
contract: Edge-only extras (snapshots, optimize, one process per store) and the server mode's wire format and
error mapping against a scripted Qdrant REST API (no Qdrant server binary can be had here).
"""

import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_servers.shared.config import BreakerSettings, StackSettings
from mcp_servers.shared.errors import ConfigurationError, DependencyUnavailable, InvalidRequest, NotFound
from mcp_servers.shared.resilience.breaker import BreakerRegistry, BreakerState
from mcp_servers.shared.vectors.bm25 import document_vector, query_vector
from mcp_servers.shared.vectors.edge import EdgeTuning, EdgeVectorIndex
from mcp_servers.shared.vectors.factory import create_vector_index
from mcp_servers.shared.vectors.ids import point_id
from mcp_servers.shared.vectors.port import FilterValue, SearchMode, VectorIndex, VectorPoint
from mcp_servers.shared.vectors.qdrant_server import QdrantServerIndex
from tests.support import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DIM = 8
COLLECTION = "chunks"

Opener = Callable[[], VectorIndex]


def _unit(*components: float) -> list[float]:
    vector = [*components, *([0.0] * (DIM - len(components)))]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


# Topic axes: 0 = authentication, 1 = databases, 2 = widgets/caching, 3.. = unrelated fillers.
AUTH_QUERY = _unit(1.0)
CORPUS: dict[str, tuple[str, list[float], dict[str, Any]]] = {
    "auth": (
        "How to configure authentication tokens for the API gateway",
        _unit(1.0, 0.1),
        {"doc": "auth", "kind": "guide", "version": 2, "public": True},
    ),
    "keys": (
        "Rotating API keys and bearer credentials safely",
        _unit(0.8, 0.3),
        {"doc": "keys", "kind": "guide", "version": 1, "public": False},
    ),
    "db": (
        "Tuning PostgreSQL connection pools under load",
        _unit(-0.2, 1.0),
        {"doc": "db", "kind": "reference", "version": 2, "public": True},
    ),
    "rare": (
        "Call frobnicate_widget_v2 to reset the cache after a deploy",
        _unit(-0.3, 0.0, 1.0),
        {"doc": "rare", "kind": "reference", "version": 3, "public": True},
    ),
    "cache": (
        "Cache invalidation strategies and eviction policies",
        _unit(0.0, 0.0, 0.9, 0.3),
        {"doc": "cache", "kind": "guide", "version": 1, "public": True},
    ),
    "filler1": ("Release notes for the spring edition", _unit(0, 0, 0, 0, 1.0), {"doc": "filler1", "kind": "news"}),
    "filler2": ("Office hours and holiday calendar", _unit(0, 0, 0, 0, 0, 1.0), {"doc": "filler2", "kind": "news"}),
}


def _point(key: str, *, payload: Mapping[str, Any] | None = None) -> VectorPoint:
    text, dense, default_payload = CORPUS[key]
    return VectorPoint(
        id=point_id("doc", key),
        dense=dense,
        sparse=document_vector(text),
        payload=payload if payload is not None else default_payload,
    )


def _docs(hits: list[Any]) -> list[str]:
    return [hit.payload["doc"] for hit in hits]


@pytest.fixture(params=["edge", "qdrant-local"])
def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Builds a fresh index over the same storage each call, through the factory, like a restarted process."""
    backend = "edge" if request.param == "edge" else "qdrant"
    settings = StackSettings(data_dir=tmp_path, vectors={"backend": backend})

    def open_() -> VectorIndex:
        return create_vector_index(settings, BreakerRegistry(BreakerSettings()))

    return open_


@pytest.fixture
async def index(open_index: Opener) -> AsyncIterator[VectorIndex]:
    vector_index = open_index()
    try:
        yield vector_index
    finally:
        await vector_index.close()


@pytest.fixture
async def loaded(index: VectorIndex) -> VectorIndex:
    await index.ensure_collection(COLLECTION, DIM)
    await index.upsert(COLLECTION, [_point(key) for key in CORPUS])
    return index


async def test_factory_builds_the_configured_adapter(index: VectorIndex, request: pytest.FixtureRequest) -> None:
    expected = EdgeVectorIndex if "edge" in request.node.callspec.id else QdrantServerIndex
    assert isinstance(index, expected)
    assert index.name in {"qdrant-edge", "qdrant"}
    await index.ping()


async def test_ensure_collection_is_idempotent(index: VectorIndex) -> None:
    await index.ensure_collection(COLLECTION, DIM)
    await index.ensure_collection(COLLECTION, DIM)
    assert await index.count(COLLECTION) == 0


async def test_ensure_collection_with_another_dimension_is_a_configuration_error(index: VectorIndex) -> None:
    await index.ensure_collection(COLLECTION, DIM)
    with pytest.raises(ConfigurationError):
        await index.ensure_collection(COLLECTION, DIM * 2)


async def test_invalid_collection_names_are_rejected(index: VectorIndex) -> None:
    for name in ("", "../etc", ".hidden", "a/b", "x" * 65):
        with pytest.raises(InvalidRequest):
            await index.ensure_collection(name, DIM)


async def test_upsert_is_idempotent_by_id_and_replaces_payload(loaded: VectorIndex) -> None:
    await loaded.upsert(COLLECTION, [_point(key) for key in CORPUS])
    assert await loaded.count(COLLECTION) == len(CORPUS)

    await loaded.upsert(COLLECTION, [_point("auth", payload={"doc": "auth", "kind": "archived"})])
    assert await loaded.count(COLLECTION) == len(CORPUS)
    hits = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=1)
    assert hits[0].id == point_id("doc", "auth")
    assert hits[0].payload == {"doc": "auth", "kind": "archived"}


async def test_upsert_into_missing_collection_is_not_found(index: VectorIndex) -> None:
    with pytest.raises(NotFound):
        await index.upsert("missing", [_point("auth")])


async def test_upsert_validates_ids_and_dimensions(loaded: VectorIndex) -> None:
    bad_id = VectorPoint(id="not-a-uuid", dense=AUTH_QUERY, sparse=document_vector("x"))
    with pytest.raises(InvalidRequest):
        await loaded.upsert(COLLECTION, [bad_id])
    short = VectorPoint(id=point_id("short"), dense=[1.0, 0.0], sparse=document_vector("x"))
    with pytest.raises(InvalidRequest):
        await loaded.upsert(COLLECTION, [short])
    not_finite = VectorPoint(id=point_id("nan"), dense=[math.nan] * DIM, sparse=document_vector("x"))
    with pytest.raises(InvalidRequest):
        await loaded.upsert(COLLECTION, [not_finite])
    assert await loaded.count(COLLECTION) == len(CORPUS)


async def test_upsert_accepts_more_points_than_one_batch(index: VectorIndex) -> None:
    await index.ensure_collection(COLLECTION, DIM)
    await index.upsert(COLLECTION, _fillers(600))
    assert await index.count(COLLECTION) == 600


async def test_delete_removes_points_and_ignores_unknown_ids(loaded: VectorIndex) -> None:
    await loaded.delete(COLLECTION, [point_id("doc", "auth"), point_id("doc", "never-stored")])
    assert await loaded.count(COLLECTION) == len(CORPUS) - 1
    hits = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=len(CORPUS))
    assert "auth" not in _docs(hits)
    await loaded.delete("missing", [point_id("doc", "auth")])


async def test_delete_where_removes_matching_points_only(loaded: VectorIndex) -> None:
    await loaded.delete_where(COLLECTION, {"kind": "reference"})
    assert await loaded.count(COLLECTION) == len(CORPUS) - 2
    await loaded.delete_where(COLLECTION, {"doc": ["filler1", "filler2"]})
    assert await loaded.count(COLLECTION) == len(CORPUS) - 4
    hits = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=len(CORPUS))
    assert sorted(_docs(hits)) == ["auth", "cache", "keys"]


async def test_delete_where_needs_a_filter_and_empty_any_of_matches_nothing(loaded: VectorIndex) -> None:
    with pytest.raises(InvalidRequest):
        await loaded.delete_where(COLLECTION, {})
    await loaded.delete_where(COLLECTION, {"doc": []})
    await loaded.delete_where("missing", {"doc": "auth"})
    assert await loaded.count(COLLECTION) == len(CORPUS)


async def test_count_of_missing_collection_is_zero(index: VectorIndex) -> None:
    assert await index.count("missing") == 0


async def test_dense_search_ranks_by_meaning_and_misses_the_rare_identifier(loaded: VectorIndex) -> None:
    hits = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=3)
    assert _docs(hits)[:2] == ["auth", "keys"]
    assert "rare" not in _docs(hits)
    assert hits[0].score > hits[1].score
    assert math.isclose(
        hits[0].score, sum(a * b for a, b in zip(AUTH_QUERY, CORPUS["auth"][1], strict=True)), rel_tol=1e-4
    )


async def test_lexical_search_finds_the_exact_rare_identifier(loaded: VectorIndex) -> None:
    hits = await loaded.search(
        COLLECTION, dense=None, sparse=query_vector("frobnicate_widget_v2"), mode="lexical", limit=3
    )
    assert _docs(hits) == ["rare"]
    assert hits[0].score > 0


async def test_lexical_search_ranks_rarer_terms_higher(loaded: VectorIndex) -> None:
    # "api" appears in two documents, "postgresql" in one: IDF makes the single match outrank either.
    hits = await loaded.search(COLLECTION, dense=None, sparse=query_vector("api postgresql"), mode="lexical", limit=5)
    assert _docs(hits)[0] == "db"
    assert set(_docs(hits)) == {"db", "auth", "keys"}


async def test_hybrid_search_returns_both_the_semantic_and_the_lexical_match(loaded: VectorIndex) -> None:
    hits = await loaded.search(
        COLLECTION,
        dense=AUTH_QUERY,
        sparse=query_vector("frobnicate_widget_v2"),
        mode="hybrid",
        limit=2,
    )
    assert set(_docs(hits)) == {"auth", "rare"}
    assert hits[0].score >= hits[1].score


async def test_hybrid_search_with_an_empty_lexical_query_falls_back_to_dense(loaded: VectorIndex) -> None:
    hits = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=query_vector("the of"), mode="hybrid", limit=2)
    assert _docs(hits) == ["auth", "keys"]


async def test_search_needs_the_vectors_its_mode_uses(loaded: VectorIndex) -> None:
    with pytest.raises(InvalidRequest):
        await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="hybrid", limit=3)
    with pytest.raises(InvalidRequest):
        await loaded.search(COLLECTION, dense=None, sparse=query_vector("api"), mode="dense", limit=3)
    with pytest.raises(InvalidRequest):
        await loaded.search(COLLECTION, dense=[1.0], sparse=None, mode="dense", limit=3)
    with pytest.raises(InvalidRequest):
        await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=0)


async def test_search_of_missing_collection_has_no_hits(index: VectorIndex) -> None:
    assert await index.search("missing", dense=AUTH_QUERY, sparse=None, mode="dense", limit=3) == []


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
async def test_exact_filters_apply_in_every_mode(loaded: VectorIndex, mode: SearchMode) -> None:
    sparse = query_vector("api cache frobnicate_widget_v2 postgresql")
    cases: list[tuple[dict[str, FilterValue], set[str]]] = [
        ({"kind": "guide"}, {"auth", "keys", "cache"}),
        ({"version": 2}, {"auth", "db"}),
        ({"public": False}, {"keys"}),
        ({"kind": "guide", "public": True}, {"auth", "cache"}),
    ]
    for filters, expected in cases:
        hits = await loaded.search(
            COLLECTION,
            dense=AUTH_QUERY,
            sparse=sparse,
            mode=mode,
            limit=10,
            filters=filters,
        )
        assert set(_docs(hits)) <= expected, filters
        if mode != "lexical":
            assert set(_docs(hits)) == expected, filters


async def test_any_of_filters_match_any_listed_value(loaded: VectorIndex) -> None:
    hits = await loaded.search(
        COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=10, filters={"doc": ["db", "rare", "nope"]}
    )
    assert sorted(_docs(hits)) == ["db", "rare"]
    none = await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=10, filters={"doc": []})
    assert none == []


async def test_any_of_filters_match_list_payloads(index: VectorIndex) -> None:
    await index.ensure_collection(COLLECTION, DIM)
    await index.upsert(COLLECTION, [_point("auth", payload={"doc": "auth", "tags": ["security", "api"]})])
    await index.upsert(COLLECTION, [_point("db", payload={"doc": "db", "tags": ["storage"]})])
    hits = await index.search(
        COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=10, filters={"tags": ["api", "other"]}
    )
    assert _docs(hits) == ["auth"]
    hits = await index.search(
        COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=10, filters={"tags": "storage"}
    )
    assert _docs(hits) == ["db"]


async def test_boolean_filters_do_not_match_integers(index: VectorIndex) -> None:
    await index.ensure_collection(COLLECTION, DIM)
    flags: dict[str, bool | int] = {"auth": True, "db": 1, "keys": False, "cache": 0}
    await index.upsert(COLLECTION, [_point(key, payload={"doc": key, "flag": flag}) for key, flag in flags.items()])
    for value, expected in ((True, ["auth"]), (1, ["db"]), (False, ["keys"]), (0, ["cache"])):
        hits = await index.search(
            COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=10, filters={"flag": value}
        )
        assert _docs(hits) == expected, value


async def test_points_survive_close_and_reopen(open_index: Opener) -> None:
    first = open_index()
    try:
        await first.ensure_collection(COLLECTION, DIM)
        await first.upsert(COLLECTION, [_point(key) for key in CORPUS])
        await first.delete(COLLECTION, [point_id("doc", "filler1")])
    finally:
        await first.close()

    second = open_index()
    try:
        assert await second.count(COLLECTION) == len(CORPUS) - 1
        await second.ensure_collection(COLLECTION, DIM)
        with pytest.raises(ConfigurationError):
            await second.ensure_collection(COLLECTION, DIM + 1)
        hits = await second.search(
            COLLECTION, dense=AUTH_QUERY, sparse=query_vector("frobnicate_widget_v2"), mode="hybrid", limit=2
        )
        assert set(_docs(hits)) == {"auth", "rare"}
        lexical = await second.search(
            COLLECTION, dense=None, sparse=query_vector("frobnicate_widget_v2"), mode="lexical", limit=2
        )
        assert _docs(lexical) == ["rare"]
    finally:
        await second.close()


async def test_drop_removes_the_collection_and_is_idempotent(loaded: VectorIndex) -> None:
    await loaded.drop(COLLECTION)
    assert await loaded.count(COLLECTION) == 0
    assert await loaded.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=3) == []
    with pytest.raises(NotFound):
        await loaded.upsert(COLLECTION, [_point("auth")])
    await loaded.drop(COLLECTION)
    await loaded.ensure_collection(COLLECTION, DIM * 2)
    assert await loaded.count(COLLECTION) == 0


async def test_drop_persists_across_reopen(open_index: Opener) -> None:
    first = open_index()
    try:
        await first.ensure_collection(COLLECTION, DIM)
        await first.upsert(COLLECTION, [_point("auth")])
        await first.drop(COLLECTION)
    finally:
        await first.close()
    second = open_index()
    try:
        assert await second.count(COLLECTION) == 0
    finally:
        await second.close()


async def test_closed_index_refuses_calls(open_index: Opener) -> None:
    vector_index = open_index()
    await vector_index.ensure_collection(COLLECTION, DIM)
    await vector_index.close()
    await vector_index.close()
    with pytest.raises(DependencyUnavailable):
        await vector_index.count(COLLECTION)


async def test_edge_snapshot_restores_into_a_new_collection(tmp_path: Path) -> None:
    vector_index = EdgeVectorIndex(tmp_path / "edge")
    try:
        await vector_index.ensure_collection(COLLECTION, DIM)
        await vector_index.upsert(COLLECTION, [_point(key) for key in CORPUS])
        archive = await vector_index.snapshot(COLLECTION, tmp_path / "backups")
        await vector_index.delete_where(COLLECTION, {"kind": "guide"})

        await vector_index.restore_snapshot("restored", archive)
        assert await vector_index.count("restored") == len(CORPUS)
        await vector_index.restore_snapshot(COLLECTION, archive)
        assert await vector_index.count(COLLECTION) == len(CORPUS)
        hits = await vector_index.search(
            "restored", dense=None, sparse=query_vector("frobnicate_widget_v2"), mode="lexical", limit=1
        )
        assert _docs(hits) == ["rare"]
    finally:
        await vector_index.close()

    reopened = EdgeVectorIndex(tmp_path / "edge")
    try:
        assert await reopened.count("restored") == len(CORPUS)
    finally:
        await reopened.close()


async def test_edge_restore_rejects_files_that_are_not_snapshots(tmp_path: Path) -> None:
    vector_index = EdgeVectorIndex(tmp_path / "edge")
    not_a_snapshot = tmp_path / "notes.tar.gz"
    not_a_snapshot.write_bytes(b"plain bytes")
    try:
        with pytest.raises(InvalidRequest):
            await vector_index.restore_snapshot(COLLECTION, not_a_snapshot)
        with pytest.raises(NotFound):
            await vector_index.restore_snapshot(COLLECTION, tmp_path / "absent.tar.gz")
        assert await vector_index.count(COLLECTION) == 0
    finally:
        await vector_index.close()


async def test_edge_store_opens_in_one_index_at_a_time(tmp_path: Path) -> None:
    first = EdgeVectorIndex(tmp_path / "edge")
    second = EdgeVectorIndex(tmp_path / "edge")
    try:
        await first.ping()
        with pytest.raises(ConfigurationError):
            await second.ping()
    finally:
        await first.close()
        await second.close()


def _fillers(count: int) -> list[VectorPoint]:
    # A gentle slope towards the auth axis keeps the HNSW landscape navigable (a flat plateau of identical
    # scores is HNSW's known worst case, not what real embeddings look like).
    return [
        VectorPoint(
            id=point_id("bulk", n),
            dense=_unit(0.3, 0, 0, 1.0, n / count),
            sparse=document_vector(f"item {n}"),
            payload={"doc": f"bulk{n}"},
        )
        for n in range(count)
    ]


async def test_edge_optimize_builds_indexes_without_changing_results(tmp_path: Path) -> None:
    # A tiny indexing threshold makes the optimiser build an HNSW graph even for this small collection.
    tuning = EdgeTuning(indexing_threshold_kb=1, full_scan_threshold_kb=1, optimize_after_points=0)
    vector_index = EdgeVectorIndex(tmp_path / "edge", tuning=tuning)
    try:
        await vector_index.ensure_collection(COLLECTION, DIM)
        await vector_index.upsert(COLLECTION, [_point(key) for key in CORPUS] + _fillers(600))

        async def top() -> tuple[list[str], list[str]]:
            dense = await vector_index.search(COLLECTION, dense=AUTH_QUERY, sparse=None, mode="dense", limit=2)
            hybrid = await vector_index.search(
                COLLECTION, dense=AUTH_QUERY, sparse=query_vector("frobnicate_widget_v2"), mode="hybrid", limit=2
            )
            return _docs(dense), sorted(_docs(hybrid))

        before = await top()
        assert await vector_index.optimize(COLLECTION) is True
        assert await vector_index.optimize(COLLECTION) is False
        assert await top() == before == (["auth", "keys"], ["auth", "rare"])
        assert await vector_index.count(COLLECTION) == len(CORPUS) + 600
    finally:
        await vector_index.close()


async def test_edge_optimizes_by_itself_after_many_upserted_points(tmp_path: Path) -> None:
    tuning = EdgeTuning(indexing_threshold_kb=1, full_scan_threshold_kb=1, optimize_after_points=500)
    vector_index = EdgeVectorIndex(tmp_path / "edge", tuning=tuning)
    try:
        await vector_index.ensure_collection(COLLECTION, DIM)
        await vector_index.upsert(COLLECTION, _fillers(600))
        # The upsert crossed the threshold and optimised already, so there is nothing left to do.
        assert await vector_index.optimize(COLLECTION) is False
    finally:
        await vector_index.close()


async def test_edge_optimize_leaves_no_replaced_segment_behind(tmp_path: Path) -> None:
    # Edge keeps the segments an optimisation replaced (on disk, mapped into the process) until a flush: without
    # one after each optimisation, 100k chunks held 1.3 GB of dead segments resident (bench/aidb.py).
    tuning = EdgeTuning(indexing_threshold_kb=1, full_scan_threshold_kb=1, optimize_after_points=0)
    vector_index = EdgeVectorIndex(tmp_path / "edge", tuning=tuning)
    segments = tmp_path / "edge" / COLLECTION / "shard" / "segments"
    try:
        await vector_index.ensure_collection(COLLECTION, DIM)
        for round_number in range(3):
            points = _fillers(300 * (round_number + 1))
            await vector_index.upsert(COLLECTION, points)
            assert await vector_index.optimize(COLLECTION) is True
            on_disk = [entry for entry in segments.iterdir() if entry.is_dir()]
            assert len(on_disk) <= tuning.default_segment_number + 1, sorted(entry.name for entry in on_disk)
        assert await vector_index.count(COLLECTION) == 900
    finally:
        await vector_index.close()


async def test_unreachable_qdrant_server_is_unavailable_and_opens_the_breaker() -> None:
    registry = BreakerRegistry(BreakerSettings(failure_threshold=2, open_seconds=60))
    settings = StackSettings(
        vectors={"backend": "qdrant", "url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 2}
    )
    vector_index = create_vector_index(settings, registry)
    try:
        for _ in range(2):
            with pytest.raises(DependencyUnavailable):
                await vector_index.ping()
        assert registry.get("vectors").state is BreakerState.OPEN
        with pytest.raises(DependencyUnavailable):
            await vector_index.count(COLLECTION)
    finally:
        await vector_index.close()


@dataclass
class ScriptedQdrant:
    """A scripted stand-in for a Qdrant server's REST API (no server binary can be had here): it records what
    the adapter sends and answers like Qdrant, or with `fail_with` as the status of every answer."""

    collections: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    fail_with: int | None = None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])])

    async def _handle(self, request: Request) -> JSONResponse:
        body: Any = await request.json() if await request.body() else None
        path = request.url.path
        self.requests.append((request.method, path, body))
        if self.fail_with is not None:
            return JSONResponse({"status": {"error": "scripted failure"}, "time": 0}, status_code=self.fail_with)
        parts = path.strip("/").split("/")
        result: Any = True
        if parts == ["collections"]:
            result = {"collections": [{"name": name} for name in self.collections]}
        elif len(parts) == 3 and parts[2] == "exists":
            result = {"exists": parts[1] in self.collections}
        elif len(parts) == 2 and request.method == "PUT":
            self.collections[parts[1]] = body["vectors"]["dense"]["size"]
        elif len(parts) == 2 and parts[1] not in self.collections:
            return JSONResponse({"status": {"error": "Not found: collection"}, "time": 0}, status_code=404)
        elif len(parts) == 2:
            result = _collection_info(self.collections[parts[1]])
        elif parts[2:] in (["points"], ["index"]):
            result = {"operation_id": 1, "status": "completed"}
        elif parts[2:] == ["points", "query"]:
            hit = {"id": point_id("doc", "auth"), "version": 1, "score": 0.5, "payload": {"doc": "auth"}}
            result = {"points": [hit]}
        return JSONResponse({"result": result, "status": "ok", "time": 0})


def _collection_info(size: int) -> dict[str, Any]:
    return {
        "status": "green",
        "optimizer_status": "ok",
        "segments_count": 1,
        "payload_schema": {},
        "config": {
            "params": {
                "vectors": {"dense": {"size": size, "distance": "Cosine"}},
                "sparse_vectors": {"bm25": {"modifier": "idf"}},
            },
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
        },
    }


@pytest.fixture
async def scripted_qdrant() -> AsyncIterator[tuple[ScriptedQdrant, str]]:
    script = ScriptedQdrant()
    async with serve_app(script.app()) as url:
        yield script, url


async def test_qdrant_server_mode_sends_named_vectors_rrf_prefetch_and_indexes_filtered_fields(
    scripted_qdrant: tuple[ScriptedQdrant, str],
) -> None:
    script, url = scripted_qdrant
    vector_index = QdrantServerIndex(url=url, timeout_seconds=5)
    try:
        await vector_index.ensure_collection(COLLECTION, DIM)
        await vector_index.upsert(COLLECTION, [_point("auth")])
        hits = await vector_index.search(
            COLLECTION,
            dense=AUTH_QUERY,
            sparse=query_vector("frobnicate_widget_v2"),
            mode="hybrid",
            limit=3,
            filters={"kind": "guide", "doc": ["auth", "keys"]},
        )
    finally:
        await vector_index.close()

    assert [(hit.id, hit.score, hit.payload) for hit in hits] == [(point_id("doc", "auth"), 0.5, {"doc": "auth"})]
    bodies = {(method, path): body for method, path, body in script.requests}
    created = bodies[("PUT", f"/collections/{COLLECTION}")]
    assert created["vectors"] == {"dense": {"size": DIM, "distance": "Cosine"}}
    assert created["sparse_vectors"] == {"bm25": {"modifier": "idf"}}
    upserted = bodies[("PUT", f"/collections/{COLLECTION}/points")]["points"][0]
    assert upserted["id"] == point_id("doc", "auth")
    assert set(upserted["vector"]) == {"dense", "bm25"}
    query = bodies[("POST", f"/collections/{COLLECTION}/points/query")]
    assert query["query"] == {"rrf": {"k": 60}}
    assert [prefetch["using"] for prefetch in query["prefetch"]] == ["dense", "bm25"]
    assert query["prefetch"][0]["params"]["hnsw_ef"] == 128
    assert query["filter"]["must"] == [
        {"key": "kind", "match": {"value": "guide"}},
        {"key": "doc", "match": {"any": ["auth", "keys"]}},
    ]
    indexed = [body for method, path, body in script.requests if path.endswith("/index")]
    assert indexed == [
        {"field_name": "kind", "field_schema": "keyword"},
        {"field_name": "doc", "field_schema": "keyword"},
    ]


async def test_qdrant_server_errors_map_to_domain_errors_and_only_outages_trip_the_breaker(
    scripted_qdrant: tuple[ScriptedQdrant, str],
) -> None:
    script, url = scripted_qdrant
    registry = BreakerRegistry(BreakerSettings(failure_threshold=2, open_seconds=60))
    settings = StackSettings(vectors={"backend": "qdrant", "url": url, "timeout_seconds": 5})
    vector_index = create_vector_index(settings, registry)
    try:
        await vector_index.ping()
        assert await vector_index.count("missing") == 0

        script.fail_with = 400
        for _ in range(3):
            with pytest.raises(InvalidRequest):
                await vector_index.ensure_collection(COLLECTION, DIM)
        assert registry.snapshot()["vectors"] == BreakerState.CLOSED.value

        script.fail_with = 503
        for _ in range(2):
            with pytest.raises(DependencyUnavailable):
                await vector_index.ping()
        assert registry.snapshot()["vectors"] == BreakerState.OPEN.value
        calls = len(script.requests)
        with pytest.raises(DependencyUnavailable):
            await vector_index.ping()
        assert len(script.requests) == calls
    finally:
        await vector_index.close()
