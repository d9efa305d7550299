"""Issue 12's attacks replayed against the stack as `make run` starts it: `mcp-stack up`, as root, on its embedded
defaults (a fresh HOME: the embedded PostgreSQL, the data dir under it), with keys of every scope made by the real
`mcp-stack keys create`. Each attack must fail.

Replayed here: per-server scopes on every request method in both eras (3), per-principal limits on resource reads,
prompt gets and sessions (6), refused credentials counted on /metrics (9), a `write` key trying to make Ralph run
a command (1), a light flood of unique 100 KB tokens (5; the full run is test_token_flood), and attacks of our own
(admin tools with a read key, undeclared arguments, another principal's MCP task, the bridge key file, the bearer
routes and the dashboard without credentials). docs/security.md maps every issue-12 attack to its test.
"""

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio import to_thread
from mcp import Client, MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

from mcp_servers.ops.stack_file import STACK_FILE
from mcp_servers.ops.supervisor import UP_ORDER
from mcp_servers.shared.embeddings.provision import DEFAULT_MODEL_DIR
from mcp_servers.shared.middleware.mcp import PERMISSION_DENIED, RATE_LIMITED
from mcp_servers.shared.postgres.embedded import cluster_dir
from tests.e2e.hardening.test_local_users import _probe_as_nobody
from tests.e2e.hardening.test_token_flood import BODY, HEADERS, HTTP_LAYER_REFUSALS, MAX_GROWTH_BYTES, resident_bytes
from tests.integration.ralph.test_mcp_tasks import RpcError, wire
from tests.integration.test_auth_limits import INITIALIZE
from tests.integration.test_method_scopes import NOT_SERVED, outcome, send
from tests.support import VENV_BIN, free_port, http_client

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

START_SECONDS = 120
STOP_SECONDS = 60
ERAS = ["legacy", "2026-07-28"]
MCP_SERVERS = ("aidb", "hybrid", "ralph")
ADMIN_KEY = re.compile(r"^\s+(mcps_[0-9a-f]+_\S+)$", re.MULTILINE)
DASHBOARD_LOGIN = re.compile(r"^Dashboard login \(shown once\): (\S+) / (\S+)$", re.MULTILINE)
# The last lines `up` prints, once the bridge key's stack file is written.
FOOTER = "Features that are off"
CLI_TOKEN = re.compile(r"^token:\s+(\S+)$", re.MULTILINE)
# Keys made with `mcp-stack keys create`: name -> (scopes, extra options).
KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "read": ("read", ()),
    "write": ("write", ()),
    "admin": ("admin", ()),
    "aidb:read": ("aidb:read", ()),
    "aidb:write": ("aidb:write", ()),
    "hybrid:read": ("hybrid:read", ()),
    "ralph:read": ("ralph:read", ()),
    "ralph:write": ("ralph:write", ()),
    "ralph:exec": ("ralph:write,ralph:exec", ()),
    # Three calls at once, one a minute after: the per-method limits show within a test, one key per era.
    "slow legacy": ("aidb:read", ("--calls-per-minute", "1", "--burst", "3")),
    "slow 2026-07-28": ("aidb:read", ("--calls-per-minute", "1", "--burst", "3")),
    # Never rate-limited in a test: what stops it opening sessions is the cap alone.
    "fast": ("aidb:read", ("--calls-per-minute", "1000000", "--burst", "1000")),
}
FLOOD_REQUESTS = 300
FLOOD_CONNECTIONS = 4
DEFAULT_SESSION_CAP = 100  # http.max_sessions_per_principal's default


@dataclass(frozen=True)
class Stack:
    home: Path
    data_dir: Path
    pid: int
    urls: dict[str, str]
    keys: dict[str, str]
    dashboard_login: tuple[str, str]

    def serve_pid(self, name: str) -> int:
        """The pid of `up`'s `serve NAME` child (Linux /proc)."""
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                parent = int((entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if parent == self.pid and b"serve" in argv and argv[argv.index(b"serve") + 1] == name.encode():
                    return int(entry.name)
        raise AssertionError(f"no `serve {name}` child of {self.pid}")


def _up_environment(home: Path, ports: dict[str, int]) -> dict[str, str]:
    """`make run`'s environment: this one without MCP_STACK_* (so embedded defaults), with a fresh HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MCP_STACK_")}
    env |= {f"MCP_STACK_HTTP__{name.upper()}_PORT": str(port) for name, port in ports.items()}
    return env | {
        "HOME": str(home),
        # The provisioned model, which a fresh HOME would otherwise look for under itself.
        "MCP_STACK_EMBEDDER__MODEL_DIR": str(DEFAULT_MODEL_DIR),
        "MCP_STACK_OBSERVABILITY__LOG_LEVEL": "WARNING",
    }


async def _create_key(env: dict[str, str], name: str, scopes: str, options: tuple[str, ...]) -> str:
    command = [str(VENV_BIN / "mcp-stack"), "keys", "create", "--name", name, "--scopes", scopes, *options]
    result = await anyio.run_process(command, env=env, check=True)
    token = CLI_TOKEN.search(result.stdout.decode())
    assert token is not None, result.stdout
    return token[1]


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    """`mcp-stack up` as `make run` starts it, for the whole module; then every key scope from the CLI."""
    assert os.getuid() == 0, "this machine runs the suite as root, as the attacks assume"
    base = Path(await to_thread.run_sync(functools.partial(tempfile.mkdtemp, prefix="mcpstack-attacks-")))
    home = base / "home"
    data_dir = home / ".local" / "share" / "mcp-stack"  # the default under HOME
    await to_thread.run_sync(os.chmod, base, 0o755)
    await to_thread.run_sync(home.mkdir, 0o700)
    ports = {name: free_port() for name in UP_ORDER}
    env = _up_environment(home, ports)
    output = base / "up.out"
    try:
        with output.open("wb") as sink:
            process = await anyio.open_process(
                [str(VENV_BIN / "mcp-stack"), "up"], env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        try:
            banner = ""
            with anyio.fail_after(START_SECONDS):
                while FOOTER not in banner:
                    assert process.returncode is None, banner
                    await anyio.sleep(0.1)
                    banner = await anyio.Path(output).read_text(encoding="utf-8", errors="replace")
            admin, login = ADMIN_KEY.search(banner), DASHBOARD_LOGIN.search(banner)
            assert admin is not None and login is not None, banner
            keys = {"up admin": admin[1]}

            async def create(name: str, scopes: str, options: tuple[str, ...]) -> None:
                keys[name] = await _create_key(env, name, scopes, options)

            async with anyio.create_task_group() as tg:
                for name, (scopes, options) in KEYS.items():
                    tg.start_soon(create, name, scopes, options)
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            yield Stack(home, data_dir, process.pid, urls, keys, (login[1], login[2]))
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
                    with anyio.move_on_after(STOP_SECONDS):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(shutil.rmtree, cluster_dir(data_dir), True)
            await to_thread.run_sync(shutil.rmtree, base, True)


async def test_up_started_as_make_run_does_and_the_cli_made_every_key(stack: Stack) -> None:
    assert set(stack.keys) == {"up admin", *KEYS}
    assert len(set(stack.keys.values())) == len(stack.keys)
    async with httpx.AsyncClient(timeout=10) as raw:
        for name in UP_ORDER:
            assert (await raw.get(f"{stack.urls[name]}/health")).status_code == 200
