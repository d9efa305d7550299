"""AIDB fixtures: settings per vector backend (Qdrant Edge and qdrant-client local mode), the server, clients."""

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from mcp import Client

from mcp_servers.aidb.deps import AidbDeps
from mcp_servers.aidb.server import create_server
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.harness import StackServer, build_core
from tests.integration.test_harness import issue_key
from tests.support import http_client, serve_app

BACKENDS = ["edge", "qdrant"]

Connect = Callable[[StackServer[AidbDeps]], contextlib.AbstractAsyncContextManager[Client]]


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """The suite's blocking-call detector, except with qdrant-client local mode, which does file I/O on the loop by
    design (its server mode is plain async HTTP)."""
    if "vector_backend" in request.fixturenames and request.getfixturevalue("vector_backend") == "qdrant":
        yield None
        return
    with blockbuster_ctx(["mcp_servers"]) as detector:
        for function in detector.functions.values():
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_arguments")
        yield detector


@pytest.fixture(params=BACKENDS)
def vector_backend(request: pytest.FixtureRequest) -> str:
    """Each AIDB test runs against both vector adapters."""
    return str(request.param)


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    """The one directory ingest_path may read."""
    root = tmp_path / "allowed"
    root.mkdir()
    return root


@pytest.fixture
def aidb_settings(stack_settings: StackSettings, vector_backend: str, roots: Path) -> StackSettings:
    """Stack settings with the chosen vector backend, one allowed root and a 64 KB document limit."""
    return stack_settings.model_copy(
        update={
            "vectors": stack_settings.vectors.model_copy(update={"backend": vector_backend}),
            "aidb": stack_settings.aidb.model_copy(
                update={"allowed_roots": [roots], "max_document_bytes": 64 * 1024, "indexer_poll_seconds": 0.2}
            ),
            # No rate limit: these tests make many calls in a burst.
            "rate_limit": stack_settings.rate_limit.model_copy(update={"enabled": False}),
        }
    )


@pytest.fixture
def aidb_server(aidb_settings: StackSettings) -> StackServer[AidbDeps]:
    """An AIDB server on the test's settings (nothing opened until a client connects)."""
    return create_server(build_core("aidb", aidb_settings))


@contextlib.asynccontextmanager
async def in_process(server: StackServer[AidbDeps]) -> AsyncIterator[Client]:
    """A client connected in-process."""
    async with Client(server.mcp) as client:
        yield client


def over_http(mode: str, scopes: list[str] | None = None) -> Connect:
    """A connector over Streamable HTTP in the given protocol era, with a key of the given scopes."""

    @contextlib.asynccontextmanager
    async def connect(server: StackServer[AidbDeps]) -> AsyncIterator[Client]:
        _, token = await issue_key(server.core.settings, scopes or ["admin"])
        async with serve_app(server.http_app()) as url, http_client(url, token, mode=mode) as client:
            yield client

    return connect


TRANSPORTS: dict[str, Connect] = {
    "in-process": in_process,
    "http-legacy": over_http("legacy"),
    "http-2026-07-28": over_http("2026-07-28"),
}


@pytest.fixture(params=list(TRANSPORTS))
def connect(request: pytest.FixtureRequest) -> Connect:
    """Connector over each transport: in-process, Streamable HTTP legacy and 2026-07-28 eras."""
    return TRANSPORTS[str(request.param)]


def structured(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result."""
    assert not result.is_error, result.content
    content = result.structured_content
    assert isinstance(content, dict)
    return content
