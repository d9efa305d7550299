"""The stack file: how a stdio entry point finds the stack `mcp-stack up` runs, and the key it may use.

`up` writes `<data_dir>/stack.json` (mode 0600, in the data dir that already holds the database files and the
credentials) with its pid, each server's MCP URL and a bridge key it issued, and removes it when it stops. A stdio
entry point (`mcp-aidb`, ...) that finds a live stack relays its client to that server (`peers.relay_stdio`)
instead of opening the single-process stores itself; without one it runs embedded, after checking that no other
process holds those stores.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio.to_thread
import httpx
from pydantic import SecretStr

from mcp_servers.shared.config import ServerName, StackSettings
from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.files import write_atomically
from mcp_servers.shared.vectors.factory import vector_store_in_use

__all__ = [
    "STACK_FILE",
    "RunningStack",
    "find_running_stack",
    "path",
    "remove",
    "running_up",
    "stores_free",
    "write",
]

STACK_FILE: Final = "stack.json"
_HEALTH_TIMEOUT_SECONDS: Final = 3.0
# The servers with their own vector store (single-process when embedded), each in `<vector_path>/<server>`.
_VECTOR_SERVERS: Final[tuple[ServerName, ...]] = ("aidb", "hybrid")


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What a running `up` published: its pid, each server's MCP URL and the bridge key."""

    pid: int
    urls: dict[str, str]
    bridge_key: SecretStr


def path(settings: StackSettings) -> Path:
    """`<data_dir>/stack.json`."""
    return settings.data_dir / STACK_FILE


def write(settings: StackSettings, urls: dict[str, str], bridge_key: str) -> None:
    """Publish this process as the running stack (blocking)."""
    payload = {"pid": os.getpid(), "urls": urls, "bridge_key": bridge_key}
    write_atomically(path(settings), json.dumps(payload), mode=0o600)


def remove(settings: StackSettings) -> None:
    """Withdraw the stack file when it is this process's (blocking)."""
    found = _read(settings)
    if found is not None and found.pid == os.getpid():
        path(settings).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, but not ours to use
        return True
    return True


def _read(settings: StackSettings) -> RunningStack | None:
    try:
        data = json.loads(path(settings).read_text(encoding="utf-8"))
        return RunningStack(int(data["pid"]), dict(data["urls"]), SecretStr(str(data["bridge_key"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_up(settings: StackSettings) -> int | None:
    """The pid of a live `up` that published its stack file in this data dir, else None (blocking)."""
    found = _read(settings)
    return found.pid if found is not None and found.pid != os.getpid() and _alive(found.pid) else None


async def find_running_stack(settings: StackSettings, server: ServerName) -> RunningStack | None:
    """The running stack serving `server`, when its stack file names a live process and the server answers."""
    found = await anyio.to_thread.run_sync(_read, settings)
    if found is None or server not in found.urls or not _alive(found.pid):
        return None
    health = found.urls[server].removesuffix("/mcp") + "/health"
    try:
        async with httpx.AsyncClient(timeout=_HEALTH_TIMEOUT_SECONDS) as client:
            answered = (await client.get(health)).status_code == 200
    except httpx.HTTPError:
        return None
    return found if answered else None


async def stores_free(settings: StackSettings, servers: tuple[ServerName, ...], *, what: str) -> None:
    """Check that no other process holds the embedded vector stores `servers` would open.

    Raises:
        ConfigurationError: one is held; the message says who probably holds it and what to do (`what` names
            the command that was refused).
    """
    for server in servers:
        if server not in _VECTOR_SERVERS:
            continue
        own = settings.vectors.model_copy(update={"path": settings.vector_path / server})
        if await anyio.to_thread.run_sync(vector_store_in_use, settings.model_copy(update={"vectors": own})):
            raise ConfigurationError(
                f"{what}: {server}'s vector store ({own.path}) is open in another process — a stdio `mcp-{server}` "
                "started by an MCP client, or a stack without its stack file. Quit that client (or stop that "
                "process) and run it again; while `mcp-stack up` runs, stdio clients share its servers."
            )
