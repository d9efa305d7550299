"""`mcp-stack up`: every server as a child process over HTTP, supervised until SIGINT/SIGTERM.

The supervisor holds the database (the embedded server stays up while it runs), issues the keys its children use
to call each other, starts the children in dependency order, waits for their `/health`, prints the banner, and
then carries out the dashboard's service commands (`DashboardStore`'s queue) until it is stopped. Each child's
environment names settings through `env_variable`, so a renamed setting fails here, not silently in a child.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Final

import anyio
import httpx
from anyio.abc import Process

from mcp_servers.dashboard.store import DashboardStore
from mcp_servers.ops import accounts, agents
from mcp_servers.shared.config import ServerName, StackSettings, env_variable, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.postgres.pool import database_dsn, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

__all__ = ["UP_ORDER", "Supervisor", "base_url", "peer_environment", "up"]

logger = logging.getLogger(__name__)

UP_ORDER: Final[tuple[ServerName, ...]] = ("aidb", "hybrid", "ralph", "dashboard")
"""Started in this order: servers that others call come first."""
SERVICE_KEY_NAME: Final = "dashboard service (created by mcp-stack up)"
PEER_KEY_NAME: Final = "server peers (created by mcp-stack up)"
COMMAND_POLL_SECONDS: Final = 1.0
HEALTH_DEADLINE_SECONDS: Final = 120.0
_HEALTH_POLL_SECONDS: Final = 0.2
_DRAIN_SECONDS: Final = 10.0
# Which peers each server calls (AIDB registers the others' tools; Hybrid takes context from AIDB and sends
# proposals to Ralph; Ralph's hybrid backend calls both).
_CALLS: Final[Mapping[ServerName, tuple[ServerName, ...]]] = {"hybrid": ("aidb", "ralph"), "ralph": ("hybrid", "aidb")}


def base_url(settings: StackSettings, name: ServerName) -> str:
    """Where `up` serves a server (the HTTP settings' host and that server's port)."""
    port = getattr(settings.http, f"{name}_port")
    return f"http://{settings.http.host}:{port}"


def peer_environment(settings: StackSettings, names: Sequence[ServerName], peer_key: str) -> dict[str, dict[str, str]]:
    """Per child: the URLs and key it needs to call the other servers `up` runs."""
    url = {name: f"{base_url(settings, name)}/mcp" for name in names}
    env: dict[str, dict[str, str]] = {name: {} for name in names}
    if "aidb" in names:
        peers = {name: url[name] for name in ("hybrid", "ralph") if name in names}
        env["aidb"] |= {
            env_variable("aidb.register_servers"): json.dumps(peers),
            env_variable("aidb.peer_api_key"): peer_key,
        }
    for client, targets in _CALLS.items():
        if client not in names:
            continue
        for target in targets:
            if target in names:
                env[client][env_variable(f"{client}.{target}_url")] = url[target]
                env[client][env_variable(f"{client}.{target}_api_key")] = peer_key
    return env


async def wait_healthy(url: str, process: Process, deadline_seconds: float = HEALTH_DEADLINE_SECONDS) -> None:
    """Poll `/health` until it answers; a child that exits first is a start-up failure.

    Raises:
        ConfigurationError: the child exited before it answered.
        TimeoutError: it did not answer within the deadline.
    """
    async with httpx.AsyncClient(timeout=2) as client:
        with anyio.fail_after(deadline_seconds):
            while process.returncode is None:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{url}/health")).status_code == 200:
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
            logger.info("service command carried out", extra={"command_id": command.id, "result": result})
            with contextlib.suppress(StackError):
                await store.finish_command(command.id, result)

    async def stop(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after the drain time)."""
        await stop_all(self.processes)


async def up(settings: StackSettings, names: Sequence[ServerName] = UP_ORDER) -> None:
    """Run `names` until SIGINT/SIGTERM; prints the banner (and keys shown once) when all are healthy."""
    async with database_dsn(settings) as dsn:
        # One DSN for every child: with the embedded server, this process keeps it running for them.
        settings = load_settings(postgres={**settings.postgres.model_dump(), "dsn": dsn})
        common = {**os.environ, env_variable("postgres.dsn"): dsn}
        admin_token = await accounts.ensure_admin_key(settings)
        peers = peer_environment(settings, names, await accounts.reissue_key(settings, PEER_KEY_NAME, "write"))
        if "ralph" in names:  # agent CLIs on PATH become Ralph's templates unless the operator configured some
            peers["ralph"] |= agents.agent_environment(settings)
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
        supervisor = Supervisor(settings, {name: common | peers[name] for name in names})
        try:
            for name in names:
                await supervisor.start(name)
            for name in names:
                await supervisor.wait_healthy(name)
            print_banner(settings, names, admin_token)
            if dashboard_admin is not None:
                print(f"\nDashboard login (shown once): {dashboard_admin[0]} / {dashboard_admin[1]}", flush=True)
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
                await supervisor.stop()
    print("mcp-stack stopped", file=sys.stderr)


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
