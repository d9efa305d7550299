"""Qdrant server snapshots over its REST API, for `mcp-stack backup`/`restore` with MCP_STACK_VECTORS__BACKEND=qdrant.

Backup: for every collection, `POST /collections/{c}/snapshots?wait=true`, download it, delete it on the server.
Restore: `POST /collections/{c}/snapshots/upload?wait=true&priority=snapshot` into a server without that
collection. qdrant-client's local mode (no URL) has no snapshot API: back it up with --vectors skip.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import Conflict, DependencyUnavailable, InvalidRequest

__all__ = ["restore_all", "snapshot_all"]

logger = logging.getLogger(__name__)

NAMESPACE: Final = "qdrant"
_SNAPSHOT_TIMEOUT_SECONDS: Final = 3600.0


@asynccontextmanager
async def _client(settings: StackSettings) -> AsyncIterator[httpx.AsyncClient]:
    url = settings.vectors.url
    if not url:
        raise InvalidRequest(
            "qdrant-client local mode has no snapshot API; back it up with --vectors skip and run AIDB's reindex "
            "after restoring"
        )
    headers = {"api-key": settings.vectors.api_key.get_secret_value()} if settings.vectors.api_key else {}
    timeout = httpx.Timeout(settings.vectors.timeout_seconds, read=_SNAPSHOT_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as client:
        try:
            yield client
        except httpx.TransportError as exc:
            raise DependencyUnavailable("qdrant", reason="snapshot call failed") from exc


def _result(response: httpx.Response, operation: str) -> Any:
    if response.status_code >= 400:
        logger.error("qdrant snapshot call failed", extra={"operation": operation, "status": response.status_code})
        raise DependencyUnavailable("qdrant", reason=f"{operation} answered HTTP {response.status_code}")
    return response.json().get("result")


async def _collection_names(client: httpx.AsyncClient) -> list[str]:
    result = _result(await client.get("/collections"), "list collections")
    return sorted(str(item["name"]) for item in result["collections"])


async def snapshot_all(settings: StackSettings, staging: Path) -> tuple[tuple[str, str, str], ...]:
    """Download a fresh snapshot of every collection into `staging/vectors/qdrant/`; (namespace, name, member)."""
    collections: list[tuple[str, str, str]] = []
    async with _client(settings) as client:
        for name in await _collection_names(client):
            path = f"/collections/{quote(name, safe='')}/snapshots"
            created = _result(await client.post(path, params={"wait": "true"}), "create snapshot")
            snapshot = quote(str(created["name"]), safe="")
            member = f"vectors/{NAMESPACE}/{name}.snapshot"
            target = anyio.Path(staging / member)
            await target.parent.mkdir(parents=True, exist_ok=True)
            try:
                async with client.stream("GET", f"{path}/{snapshot}") as response:
                    if response.status_code >= 400:
                        raise DependencyUnavailable("qdrant", reason=f"download answered HTTP {response.status_code}")
                    async with await anyio.open_file(target, "wb") as out:
                        async for chunk in response.aiter_bytes():
                            await out.write(chunk)
            finally:
                # The server keeps every snapshot until deleted; this one lives in the archive now.
                await client.delete(f"{path}/{snapshot}")
            collections.append((NAMESPACE, name, member))
    return tuple(collections)


async def restore_all(settings: StackSettings, collections: Sequence[tuple[str, str, str]], scratch: Path) -> None:
    """Upload each snapshot as a new collection; refuses when the server already has one of them."""
    async with _client(settings) as client:
        existing = set(await _collection_names(client))
        clash = sorted(existing & {name for _, name, _ in collections})
        if clash:
            raise Conflict(f"the Qdrant server already has collection {clash[0]!r}; restore needs an empty server")
        for _, name, member in collections:
            content = await anyio.Path(scratch / member).read_bytes()
            response = await client.post(
                f"/collections/{quote(name, safe='')}/snapshots/upload",
                params={"wait": "true", "priority": "snapshot"},
                files={"snapshot": (f"{name}.snapshot", content, "application/octet-stream")},
            )
            _result(response, "upload snapshot")
