"""A scripted peer: a real StackServer over HTTP whose tools answer, refuse with a tool error, or hang."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from pydantic import BaseModel, Field

from mcp_servers.shared.annotations import READ_ONLY
from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.harness import Core, ReadinessCheck, StackServer, build_core
from mcp_servers.shared.postgres.pool import Database

REFUSAL = "this peer refuses: pass a shorter prompt"


class Echo(BaseModel):
    text: str


class Hits(BaseModel):
    hits: list[dict[str, str]]


@dataclass(frozen=True)
class PeerDeps:
    database: Database

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}


@contextlib.asynccontextmanager
async def _open(core: Core, database: Database) -> AsyncIterator[PeerDeps]:
    yield PeerDeps(database)


def build_peer_server(settings: StackSettings, release: anyio.Event) -> StackServer[PeerDeps]:
    """Tools: `echo`, `search`; `refuse` and `route_query` answer isError; `hang` waits until `release` is set."""
    server = StackServer(build_core("hybrid", settings), instructions="scripted peer", open_deps=_open)

    @server.tool("echo", annotations=READ_ONLY)
    async def echo(text: Annotated[str, Field(max_length=100)]) -> Echo:
        """Echo text back."""
        return Echo(text=text)

    @server.tool("search", annotations=READ_ONLY)
    async def search(query: Annotated[str, Field(max_length=10_000)], limit: int = 5) -> Hits:
        """AIDB's search, with one hit."""
        return Hits(hits=[{"chunk_id": "c1", "text": f"about {query}"}])

    @server.tool("refuse", annotations=READ_ONLY)
    async def refuse(
        text: Annotated[str, Field(max_length=100)] = "",
        query: Annotated[str, Field(max_length=10_000)] = "",
        limit: int = 5,
    ) -> Echo:
        """Always a tool error."""
        raise InvalidRequest(REFUSAL)

    @server.tool("route_query", annotations=READ_ONLY)
    async def route_query(
        prompt: Annotated[str, Field(max_length=100_000)],
        system: Annotated[str | None, Field(max_length=10_000)] = None,
        max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 1,
    ) -> Echo:
        """Hybrid's route_query, refusing every prompt."""
        raise InvalidRequest(REFUSAL)

    @server.tool("hang", annotations=READ_ONLY)
    async def hang() -> Echo:
        """Answers only once the test releases it."""
        await release.wait()
        return Echo(text="released")

    return server
