"""Start stack servers as real `mcp-stack` processes on loopback ports for the hardening tests; stop them after.

`served(name, settings, ...)` yields a `Served` (base URL, process, env); `kill9` and `restart` exercise crashes.
Every wait is bounded: health within `START_TIMEOUT_SECONDS`, a graceful stop within `STOP_TIMEOUT_SECONDS`.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from mcp_servers.shared.config import StackSettings
from tests.support import VENV_BIN, free_port, wait_http_ok

START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0


def stack_env(settings: StackSettings, **overrides: str) -> dict[str, str]:
    """The environment of a `mcp-stack` child: this process's env minus MCP_STACK_*, plus the test's settings."""
    assert settings.postgres.dsn is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {
        "MCP_STACK_POSTGRES__DSN": settings.postgres.dsn.get_secret_value(),
        "MCP_STACK_DATA_DIR": str(settings.data_dir),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }
    return env | overrides


@dataclass
class Served:
    """One running server process (restartable in place)."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] = field(init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "mcp-stack"), "serve", self.name, "--transport", "http"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def wait_healthy(self) -> None:
        await wait_http_ok(f"{self.url}/health", timeout=START_TIMEOUT_SECONDS, process=self.process)

    async def kill9(self) -> None:
        """SIGKILL the process (no shutdown code runs) and reap it."""
        self.process.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(self.process.wait, STOP_TIMEOUT_SECONDS)

    async def restart(self) -> None:
        """Start the same server again on the same port and data dir; returns once /health answers."""
        self.start()
        await self.wait_healthy()

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await anyio.to_thread.run_sync(self.process.wait, STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await anyio.to_thread.run_sync(self.process.wait, STOP_TIMEOUT_SECONDS)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def served(
    name: str, settings: StackSettings, log_dir: Path, env: Mapping[str, str] | None = None, port: int | None = None
) -> AsyncIterator[Served]:
    """Run `mcp-stack serve NAME --transport http` on 127.0.0.1 until the block ends (SIGTERM, then SIGKILL)."""
    port = port or free_port()
    child_env = stack_env(settings, **{f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port)}) | dict(env or {})
    await anyio.Path(log_dir).mkdir(parents=True, exist_ok=True)
    server = Served(name, port, child_env, log_dir / f"{name}-{port}.log")
    server.start()
    try:
        await server.wait_healthy()
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop()
