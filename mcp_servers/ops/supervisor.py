"""`mcp-stack up`: every server as a child process over HTTP, supervised until SIGINT/SIGTERM.

The supervisor holds the database (the embedded server stays up while it runs), issues the keys its children use
to call each other (one per link, with the least scopes it needs: `LINK_SCOPES`), starts the children in
dependency order, waits for their `/health`, prints the banner, and then carries out the dashboard's service
commands (`DashboardStore`'s queue) until it is stopped. Each child's environment names settings through
`env_variable`, so a renamed setting fails here, not silently in a child.
"""

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

import anyio
import httpx
from anyio.abc import Process

from mcp_servers.dashboard.store import DashboardStore
from mcp_servers.ops import accounts, agents, stack_file
from mcp_servers.shared.config import LlmBackendSettings, ServerName, StackSettings, env_variable, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.files import make_private_dir
from mcp_servers.shared.observability.logging import NOTABLE
from mcp_servers.shared.postgres.pool import database_dsn, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

__all__ = [
    "LINK_SCOPES",
    "UP_ORDER",
    "Supervisor",
    "base_url",
    "link_key_name",
    "links_between",
    "peer_environment",
    "up",
]

logger = logging.getLogger(__name__)

UP_ORDER: Final[tuple[ServerName, ...]] = ("aidb", "hybrid", "ralph", "dashboard")
"""Started in this order: servers that others call come first."""
SERVICE_KEY_NAME: Final = "dashboard service (created by mcp-stack up)"
# The one stack-wide write key earlier versions handed every child: revoked by each `up` now.
RETIRED_PEER_KEY_NAME: Final = "server peers (created by mcp-stack up)"
BRIDGE_KEY_NAME: Final = "stdio bridge (created by mcp-stack up)"
COMMAND_POLL_SECONDS: Final = 1.0
HEALTH_DEADLINE_SECONDS: Final = 120.0
_HEALTH_POLL_SECONDS: Final = 0.2
_DRAIN_SECONDS: Final = 10.0

Link = tuple[ServerName, ServerName]
LINK_SCOPES: Final[Mapping[Link, tuple[str, ...]]] = {
    # AIDB's discovery only lists the others' tools.
    ("aidb", "hybrid"): ("hybrid:read",),
    ("aidb", "ralph"): ("ralph:read",),
    # augment_query's context: AIDB's search.
    ("hybrid", "aidb"): ("aidb:read",),
    # Optimisation proposals: submit_task on the hybrid backend, whose prompts carry AIDB context, so Ralph
    # asks the submitter for aidb:read too (Hybrid holds it already through its AIDB link).
    ("hybrid", "ralph"): ("ralph:write", "aidb:read"),
    # The hybrid backend: route_query and update_outcome.
    ("ralph", "hybrid"): ("hybrid:write",),
    # The hybrid backend's iteration context: AIDB's search.
    ("ralph", "aidb"): ("aidb:read",),
}
"""Each link `up` wires (caller, callee) and the least scopes its key holds, read from the calls each makes."""


def link_key_name(link: Link) -> str:
    """The name of a link's key in `mcp-stack keys list`."""
    return f"{link[0]} -> {link[1]} (created by mcp-stack up)"


def links_between(names: Sequence[ServerName]) -> list[Link]:
    """The links among the servers `up` runs."""
    return [link for link in LINK_SCOPES if link[0] in names and link[1] in names]


def base_url(settings: StackSettings, name: ServerName) -> str:
    """Where `up` serves a server (the HTTP settings' host and that server's port)."""
    port = getattr(settings.http, f"{name}_port")
    return f"http://{settings.http.host}:{port}"


def peer_environment(
    settings: StackSettings, names: Sequence[ServerName], keys: Mapping[Link, str]
) -> dict[str, dict[str, str]]:
    """Per child: the URLs it needs to call the other servers `up` runs, each with that link's own key."""
    url = {name: f"{base_url(settings, name)}/mcp" for name in names}
    env: dict[str, dict[str, str]] = {name: {} for name in names}
    for client, target in links_between(names):
        if client == "aidb":
            continue
        env[client][env_variable(f"{client}.{target}_url")] = url[target]
        env[client][env_variable(f"{client}.{target}_api_key")] = keys[client, target]
    if "aidb" in names:
        peers = [target for client, target in links_between(names) if client == "aidb"]
        env["aidb"] |= {
            env_variable("aidb.register_servers"): json.dumps({name: url[name] for name in peers}),
            env_variable("aidb.peer_api_keys"): json.dumps({name: keys["aidb", name] for name in peers}),
        }
    return env


async def wait_healthy(
    url: str, process: Process, deadline_seconds: float = HEALTH_DEADLINE_SECONDS, *, probe: str = "/health"
) -> None:
    """Poll `/health` until it answers; a child that exits first is a start-up failure.

    Raises:
        ConfigurationError: the child exited before it answered.
        TimeoutError: it did not answer within the deadline.
    """
    async with httpx.AsyncClient(timeout=2) as client:
        with anyio.fail_after(deadline_seconds):
            while process.returncode is None:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{url}{probe}")).status_code == 200:
                        return
                await anyio.sleep(_HEALTH_POLL_SECONDS)
    raise ConfigurationError(f"{url} exited with status {process.returncode} during start-up")


async def stop_all(processes: Mapping[ServerName, Process]) -> None:
    """SIGTERM every child, give each 10 s to drain, then SIGKILL."""
    for process in processes.values():
        if process.returncode is None:
            process.terminate()
    for process in processes.values():
        with anyio.move_on_after(_DRAIN_SECONDS):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


class Supervisor:
    """The children of one `up`: started with their environment, restarted on request, stopped together."""

    def __init__(self, settings: StackSettings, environment: Mapping[ServerName, Mapping[str, str]]) -> None:
        self._settings = settings
        self._environment = environment
        self.processes: dict[ServerName, Process] = {}

    async def start(self, name: ServerName) -> None:
        """Start one child over HTTP; its stdout and stderr are the supervisor's."""
        self.processes[name] = await anyio.open_process(
            [sys.executable, "-m", "mcp_servers.cli", "serve", name, "--transport", "http"],
            env=dict(self._environment[name]),
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=None,
        )

    async def wait_healthy(self, name: ServerName) -> None:
        """Wait until the child answers `/health` (see the module-level `wait_healthy`)."""
        await wait_healthy(base_url(self._settings, name), self.processes[name])

    async def restart(self, name: ServerName) -> str:
        """Stop and start one child; returns the result recorded for the command."""
        logger.warning("restarting server on request", extra={"server": name})
        await stop_all({name: self.processes[name]})
        await self.start(name)
        try:
            await self.wait_healthy(name)
        except (ConfigurationError, TimeoutError):
            return "failed: the server did not become healthy"
        return "restarted"

    async def carry_out_commands(self, store: DashboardStore, *, poll_seconds: float = COMMAND_POLL_SECONDS) -> None:
        """Carry out the dashboard's service commands until cancelled; only servers this `up` started, never the
        dashboard itself (it would cut the request that asked)."""
        while True:
            await anyio.sleep(poll_seconds)
            try:
                command = await store.next_pending_command()
            except StackError:
                continue
            if command is None:
                continue
            name = next((started for started in self.processes if started == command.server), None)
            if name is None or name == "dashboard" or command.action != "restart":
                result = "refused: not a server started by mcp-stack up"
            else:
                result = await self.restart(name)
            logger.info("service command carried out", extra={"command_id": command.id, "result": result, **NOTABLE})
            with contextlib.suppress(StackError):
                await store.finish_command(command.id, result)

    async def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the drain time)."""
        await stop_all(self.processes)


def ingest_roots(settings: StackSettings, roots: Sequence[Path]) -> dict[str, str]:
    """AIDB's environment for the configured ingest roots plus `up --root` ones.

    Raises:
        ConfigurationError: a root is not an existing directory.
    """
    if not roots:
        return {}
    chosen = list(settings.aidb.allowed_roots)
    for root in roots:
        if not root.is_dir():
            raise ConfigurationError(f"--root {root}: not a directory; name an existing directory to ingest from")
        chosen.append(root.resolve())
    return {env_variable("aidb.allowed_roots"): json.dumps([str(root) for root in dict.fromkeys(chosen)])}


LOCAL_MODEL: Final = Path.home() / ".cache/mcp-stack/models/gemma3-270m-q4_k_m.gguf"
"""The model `scripts/provision-tools.sh llama` assembles (Gemma 3 270M, Q4_K_M)."""
LOCAL_BACKEND: Final = "local"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def local_llm_server(settings: StackSettings) -> AsyncIterator[dict[str, str]]:
    """Serve the provisioned local model with llama.cpp on a free loopback port for the block's lifetime; yields
    Hybrid's environment with that server as its local backend (before any configured backends).

    Raises:
        ConfigurationError: the model or llama-cpp-python is not provisioned, or the server did not start.
    """
    if not await anyio.Path(LOCAL_MODEL).is_file() or importlib.util.find_spec("llama_cpp") is None:
        raise ConfigurationError(
            "--local-llm: the local model is not provisioned; run `bash scripts/provision-tools.sh llama` "
            "(`make run LLM=1` does it)"
        )
    port = await anyio.to_thread.run_sync(_free_loopback_port)
    log = await anyio.to_thread.run_sync(_llama_log, settings)
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(LOCAL_MODEL), "--chat_format", "gemma"]
    process = await anyio.open_process(
        [*argv, "--host", "127.0.0.1", "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, process, probe="/v1/models")
        local = {
            "name": LOCAL_BACKEND,
            "kind": "local",
            "base_url": f"{url}/v1",
            "model": "gemma3-270m",
            "context_window_tokens": 8192,
            "json_mode": "json_object",  # llama-cpp-python's server rejects the OpenAI json_schema form
        }
        others = [_backend_json(backend) for backend in settings.hybrid.backends if backend.name != LOCAL_BACKEND]
        logger.info("local LLM serving", extra={"port": port, **NOTABLE})
        yield {env_variable("hybrid.backends"): json.dumps([local, *others])}
    finally:
        with anyio.CancelScope(shield=True):
            await stop_all({"hybrid": process})
            log.close()


def _llama_log(settings: StackSettings) -> IO[bytes]:
    make_private_dir(settings.log_path)
    return open(settings.log_path / "llama.log", "ab")  # closed by local_llm_server when the server stops


def _backend_json(backend: LlmBackendSettings) -> dict[str, object]:
    data: dict[str, object] = backend.model_dump(mode="json", exclude_none=True)
    if backend.api_key is not None:  # the child needs the key itself, not its mask
        data["api_key"] = backend.api_key.get_secret_value()
    return data


async def up(
    settings: StackSettings,
    names: Sequence[ServerName] = UP_ORDER,
    *,
    roots: Sequence[Path] = (),
    local_llm: bool = False,
) -> None:
    """Run `names` until SIGINT/SIGTERM; prints the banner (and keys shown once) when all are healthy.

    Args:
        roots: directories AIDB may ingest besides the configured ones (`up --root`).
        local_llm: serve the provisioned local model and make it Hybrid's local backend (`up --local-llm`).
    """
    aidb_roots = ingest_roots(settings, roots)
    running = await anyio.to_thread.run_sync(stack_file.running_up, settings)
    if running is not None:
        raise ConfigurationError(f"mcp-stack up is running already (pid {running}) on {settings.data_dir}")
    await stack_file.stores_free(settings, tuple(names), what="mcp-stack up")
    async with database_dsn(settings) as dsn:
        # One DSN for every child: with the embedded server, this process keeps it running for them.
        settings = load_settings(postgres={**settings.postgres.model_dump(), "dsn": dsn})
        common = {**os.environ, env_variable("postgres.dsn"): dsn}
        admin_token = await accounts.ensure_admin_key(settings)
        links = links_between(names)
        tokens = await accounts.reissue_keys(
            settings, {link_key_name(link): LINK_SCOPES[link] for link in links}, retired=[RETIRED_PEER_KEY_NAME]
        )
        peers = peer_environment(settings, names, {link: tokens[link_key_name(link)] for link in links})
        if "ralph" in names:  # agent CLIs on PATH become Ralph's templates unless the operator configured some
            peers["ralph"] |= await anyio.to_thread.run_sync(agents.agent_environment, settings)  # scans PATH
        dashboard_admin = None
        if "dashboard" in names:
            # The service key goes to the dashboard's process only.
            peers["dashboard"] |= {
                env_variable("dashboard.service_api_key"): await accounts.reissue_key(
                    settings, SERVICE_KEY_NAME, "admin"
                ),
                env_variable("dashboard.supervised"): "true",
            }
            dashboard_admin = await accounts.ensure_dashboard_admin(settings)
        if "aidb" in names:
            peers["aidb"] |= aidb_roots
        llm = contextlib.AsyncExitStack()
        if local_llm and "hybrid" in names:
            peers["hybrid"] |= await llm.enter_async_context(local_llm_server(settings))
        supervisor = Supervisor(settings, {name: common | peers[name] for name in names})
        try:
            for name in names:
                await supervisor.start(name)
            for name in names:
                await supervisor.wait_healthy(name)
            created = {"admin_api_key": admin_token} if admin_token is not None else {}
            if dashboard_admin is not None:
                created |= {"dashboard_username": dashboard_admin[0], "dashboard_password": dashboard_admin[1]}
            if created:
                await accounts.save_initial_credentials(settings, created)
            print_banner(settings, names, admin_token)
            if dashboard_admin is not None:
                print(f"\nDashboard login (shown once): {dashboard_admin[0]} / {dashboard_admin[1]}", flush=True)
            await publish_stack(settings, names)
            print_footer(settings)
            async with (
                open_database(settings, BreakerRegistry(settings.breaker)) as database,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(supervisor.carry_out_commands, DashboardStore(database))
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await withdraw_stack(settings)
                await supervisor.stop()
                await llm.aclose()
    print("mcp-stack stopped", file=sys.stderr)


async def publish_stack(settings: StackSettings, names: Sequence[ServerName]) -> None:
    """Write the stack file with a fresh bridge key, so stdio entry points serve their clients through us.

    The key has the admin scope a stdio client has always had (it is trusted as the user); the file is 0600 in
    the data dir, which already holds the database files and the credentials file, and the key is revoked when
    `up` stops and replaced by the next `up`.
    """
    bridge_key = await accounts.reissue_key(settings, BRIDGE_KEY_NAME, "admin")
    urls: dict[str, str] = {name: f"{base_url(settings, name)}/mcp" for name in names if name != "dashboard"}
    await anyio.to_thread.run_sync(stack_file.write, settings, urls, bridge_key)


async def withdraw_stack(settings: StackSettings) -> None:
    """Remove the stack file and revoke the bridge key (best effort: `up` is stopping)."""
    await anyio.to_thread.run_sync(stack_file.remove, settings)
    with contextlib.suppress(StackError), anyio.move_on_after(_DRAIN_SECONDS):
        await accounts.revoke_keys_named(settings, BRIDGE_KEY_NAME)


def print_banner(settings: StackSettings, names: Sequence[ServerName], admin_token: str | None) -> None:
    """Where each server listens, and the admin key when `up` created one."""
    lines = ["", "mcp-stack is up (Ctrl-C to stop):"]
    for name in names:
        url = base_url(settings, name)
        suffix = "" if name == "dashboard" else "/mcp"
        lines.append(f"  {name:<10} {url}{suffix}    health: {url}/health")
    if admin_token is not None:
        lines += ["", "Admin API key (shown once, store it now):", f"  {admin_token}"]
    else:
        lines += ["", "An admin key exists already; add keys with `mcp-stack keys create --name NAME --scopes read`."]
    print("\n".join(lines), flush=True)


def print_footer(settings: StackSettings) -> None:
    """Where the credentials and the logs are, and what to run next; the terminal then shows notable events."""
    credentials = accounts.credentials_path(settings)
    lines = [""]
    if credentials.exists():
        lines.append(f"Credentials created by `up` are also in {credentials} (mode 0600; delete it once stored).")
    lines += [
        "Lost the dashboard password? `mcp-stack dashboard-user reset-password --username admin --generate`",
        f"Logs (JSON, one file per process): {settings.log_path}",
        "Stdio clients (`mcp-stack client-config claude-desktop`) use this running stack while it is up.",
        "Features that are off and how to turn them on: `mcp-stack doctor`",
        "",
    ]
    print("\n".join(lines), flush=True)
