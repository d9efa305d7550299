"""Backup and restore against the Qdrant server snapshot API, played by a scripted server (no Qdrant binary here).

The script follows Qdrant's documented REST calls (create, download, delete a collection snapshot; upload one with
priority=snapshot); it checks the requests our client sends and the bytes that travel, not Qdrant itself.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_servers.ops.backup import create_backup, restore_backup
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.errors import Conflict
from tests.support import serve_app

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

API_KEY = "qdrant-test-key"


@dataclass
class FakeQdrant:
    """Collections as snapshot bytes; every request's API key is checked."""

    collections: dict[str, bytes] = field(default_factory=dict)
    snapshots: dict[tuple[str, str], bytes] = field(default_factory=dict)
    uploads: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def app(self) -> Starlette:
        def authorised(request: Request) -> bool:
            return request.headers.get("api-key") == API_KEY

        async def list_collections(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"status": {"error": "unauthorised"}}, status_code=401)
            return JSONResponse({"result": {"collections": [{"name": name} for name in self.collections]}})

        async def create_snapshot(request: Request) -> Response:
            name = request.path_params["name"]
            assert authorised(request) and request.query_params.get("wait") == "true"
            snapshot = f"{name}-{len(self.snapshots)}.snapshot"
            self.snapshots[(name, snapshot)] = self.collections[name]
            return JSONResponse({"result": {"name": snapshot, "size": len(self.collections[name])}})

        async def snapshot(request: Request) -> Response:
            key = (request.path_params["name"], request.path_params["snapshot"])
            assert authorised(request)
            if request.method == "DELETE":
                del self.snapshots[key]
                return JSONResponse({"result": True})
            return Response(self.snapshots[key], media_type="application/octet-stream")

        async def upload(request: Request) -> Response:
            assert authorised(request)
            name = request.path_params["name"]
            async with request.form() as form:
                part = form["snapshot"]
                assert not isinstance(part, str)
                self.collections[name] = await part.read()
            self.uploads.append((name, dict(request.query_params)))
            return JSONResponse({"result": True})

        return Starlette(
            routes=[
                Route("/collections", list_collections),
                Route("/collections/{name}/snapshots", create_snapshot, methods=["POST"]),
                Route("/collections/{name}/snapshots/upload", upload, methods=["POST"]),
                Route("/collections/{name}/snapshots/{snapshot}", snapshot, methods=["GET", "DELETE"]),
            ]
        )


@contextlib.asynccontextmanager
async def fake_qdrant(collections: dict[str, bytes]) -> AsyncIterator[tuple[FakeQdrant, str]]:
    fake = FakeQdrant(dict(collections))
    async with serve_app(fake.app()) as url:
        yield fake, url


def qdrant_settings(base: StackSettings, url: str, data_dir: Path, dsn: str | None) -> StackSettings:
    return load_settings(
        data_dir=data_dir,
        postgres={"dsn": dsn} if dsn else {},
        vectors={"backend": "qdrant", "url": url, "api_key": API_KEY},
    )


async def test_collections_travel_through_the_snapshot_api_into_an_empty_server(
    stack_settings: StackSettings, pg_empty_dsn: str, tmp_path: Path
) -> None:
    payloads = {"aidb_chunks": b"chunk-shard" * 5000, "hybrid_best_practices": bytes(range(256)) * 100}
    assert stack_settings.postgres.dsn is not None
    archive = tmp_path / "stack.tar"
    async with fake_qdrant(payloads) as (source, url):
        source_settings = qdrant_settings(
            stack_settings, url, tmp_path / "src", stack_settings.postgres.dsn.get_secret_value()
        )
        manifest = await create_backup(source_settings, archive)
        assert source.snapshots == {}  # every snapshot deleted on the server once downloaded
    assert sorted(name for _, name, _ in manifest.collections) == sorted(payloads)

    async with fake_qdrant({}) as (target, url):
        await restore_backup(qdrant_settings(stack_settings, url, tmp_path / "dst", pg_empty_dsn), archive)
        assert target.collections == payloads
        assert all(params == {"wait": "true", "priority": "snapshot"} for _, params in target.uploads)


async def test_restore_refuses_a_qdrant_server_that_already_has_the_collection(
    stack_settings: StackSettings, pg_empty_dsn: str, tmp_path: Path
) -> None:
    assert stack_settings.postgres.dsn is not None
    archive = tmp_path / "stack.tar"
    async with fake_qdrant({"aidb_chunks": b"x"}) as (_, url):
        await create_backup(
            qdrant_settings(stack_settings, url, tmp_path / "src", stack_settings.postgres.dsn.get_secret_value()),
            archive,
        )
        with pytest.raises(Conflict):
            await restore_backup(qdrant_settings(stack_settings, url, tmp_path / "dst", pg_empty_dsn), archive)
