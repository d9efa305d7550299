"""`mcp-stack`: load settings once, configure logging, build servers, run them.

mcp-stack up                                   every server over HTTP on embedded defaults
mcp-stack serve aidb --transport stdio|http    one server (stdio for Claude Desktop and IDEs)
mcp-stack keys create|list|revoke              API keys for the HTTP transports
mcp-stack worker ralph [--concurrency N]       Ralph task workers only (no MCP transport)
mcp-stack serve dashboard --transport http     the operator dashboard alone (HTTP only)
mcp-stack dashboard-user create --username U   add a dashboard account (password from stdin or a prompt)
mcp-stack backup|restore|doctor|client-config  operator commands (mcp_servers/ops/commands.py)
"""

import argparse
import contextlib
import getpass
import importlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import httpx
from anyio.abc import Process

from mcp_servers.ops import commands as ops_commands
from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import ServerName, StackSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.files import PRIVATE_UMASK, make_data_dir
from mcp_servers.shared.harness import StackServer, build_core, serve_http, serve_stdio
from mcp_servers.shared.observability.logging import configure_logging
from mcp_servers.shared.postgres.embedded import embedded_postgres
from mcp_servers.shared.postgres.pool import Database, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

logger = logging.getLogger(__name__)

# name -> "module:factory"; each factory takes a Core and returns a StackServer.
SERVERS: dict[str, str] = {
    "aidb": "mcp_servers.aidb.server:create_server",
    "hybrid": "mcp_servers.hybrid.server:create_server",
    "ralph": "mcp_servers.ralph.server:create_server",
    "dashboard": "mcp_servers.dashboard.app:serve",  # HTTP only: an app, not a StackServer
}
SERVICE_KEY_NAME = "dashboard service (created by mcp-stack up)"
PEER_KEY_NAME = "server peers (created by mcp-stack up)"
COMMAND_POLL_SECONDS = 1.0
# Started by `up` in this order: servers that others call come first.
UP_ORDER: tuple[str, ...] = ("aidb", "hybrid", "ralph", "dashboard")


def build_server(name: str, settings: StackSettings) -> StackServer[Any]:
    """Import the server's module and build it from settings."""
    module_name, factory_name = SERVERS[name].split(":")
    factory: Callable[..., StackServer[Any]] = getattr(importlib.import_module(module_name), factory_name)
    server_name: ServerName = name  # type: ignore[assignment]  # validated by argparse choices
    return factory(build_core(server_name, settings))


async def _serve(name: str, transport: str, settings: StackSettings, host: str | None, port: int | None) -> None:
    if name == "dashboard":
        if transport != "http":
            raise ConfigurationError("the dashboard is HTTP only: use `mcp-stack serve dashboard --transport http`")
        module_name, function_name = SERVERS[name].split(":")
        await getattr(importlib.import_module(module_name), function_name)(settings, host=host, port=port)
        return
    server = build_server(name, settings)
    if transport == "stdio":
        await serve_stdio(server)
    else:
        await serve_http(server, host=host, port=port)


async def _worker(name: str, settings: StackSettings, concurrency: int | None) -> None:
    # Imported by name like the servers: the CLI does not depend on a server package at import time.
    run_workers = importlib.import_module(f"mcp_servers.{name}.standalone").run_workers
    await run_workers(settings, concurrency=concurrency)


@contextlib.asynccontextmanager
async def _postgres_dsn(settings: StackSettings) -> AsyncIterator[str]:
    """The configured DSN, or one for an embedded server started (and stopped) here."""
    if settings.postgres.dsn is not None:
        yield settings.postgres.dsn.get_secret_value()
        return
    async with embedded_postgres(settings.data_dir) as dsn:
        yield dsn


async def _ensure_admin_key(settings: StackSettings) -> str | None:
    """Create an admin key when none is active; return its token (shown once) or None."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        if any(key.revoked_at is None and "admin" in key.scopes for key in await keys.list()):
            return None
        return (await keys.create("admin (created by mcp-stack up)", ["admin"])).token


async def _ensure_service_key(settings: StackSettings, name: str = SERVICE_KEY_NAME, scope: str = "admin") -> str:
    """A fresh key named `name` for calls between the stack's processes; earlier ones from `up` are revoked."""
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        keys = KeyStore(database)
        for key in await keys.list():
            if key.name == name and key.revoked_at is None:
                await keys.revoke(key.key_id)
        return (await keys.create(name, [scope])).token


def _peer_env(settings: StackSettings, names: Sequence[str], peer_key: str) -> dict[str, dict[str, str]]:
    """Per child: the URLs and key it needs to call the other servers `up` runs (AIDB registers the others'
    tools; Hybrid takes context from AIDB and sends proposals to Ralph; Ralph's hybrid backend calls both)."""
    url = {name: f"{_base_url(settings, name)}/mcp" for name in names}
    env: dict[str, dict[str, str]] = {name: {} for name in names}
    if "aidb" in names:
        peers = {name: url[name] for name in ("hybrid", "ralph") if name in names}
        env["aidb"] |= {"MCP_STACK_AIDB__REGISTER_SERVERS": json.dumps(peers), "MCP_STACK_AIDB__PEER_API_KEY": peer_key}
    for client, targets in (("hybrid", ("aidb", "ralph")), ("ralph", ("hybrid", "aidb"))):
        if client not in names:
            continue
        for target in targets:
            if target in names:
                env[client][f"MCP_STACK_{client.upper()}__{target.upper()}_URL"] = url[target]
                env[client][f"MCP_STACK_{client.upper()}__{target.upper()}_API_KEY"] = peer_key
    return env


async def _ensure_dashboard_admin(settings: StackSettings) -> tuple[str, str] | None:
    """Create the first dashboard admin when there is no account; return (username, password) to print once."""
    store_module = importlib.import_module("mcp_servers.dashboard.store")
    auth_module = importlib.import_module("mcp_servers.dashboard.auth")
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        store = store_module.DashboardStore(database)
        if await store.count_users() > 0:
            return None
        password = secrets.token_urlsafe(18)
        await store.create_user("admin", await auth_module.Passwords().hash(password), "admin")
        return "admin", password


async def _wait_healthy(url: str, process: Process, deadline_seconds: float = 120) -> None:
    """Poll /health until it answers; a child that exits first is a start-up failure."""
    async with httpx.AsyncClient(timeout=2) as client:
        with anyio.fail_after(deadline_seconds):
            while process.returncode is None:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{url}/health")).status_code == 200:
                        return
                await anyio.sleep(0.2)
    raise ConfigurationError(f"{url} exited with status {process.returncode} during start-up")


async def _up(settings: StackSettings) -> None:
    names = [name for name in UP_ORDER if name in SERVERS]
    async with _postgres_dsn(settings) as dsn:
        env = {**os.environ, "MCP_STACK_POSTGRES__DSN": dsn}
        settings = load_settings(postgres={**settings.postgres.model_dump(), "dsn": dsn})
        admin_token = await _ensure_admin_key(settings)
        dashboard_admin = None
        dashboard_env: dict[str, str] = {}  # the service key goes to the dashboard's process only
        if "dashboard" in names:
            dashboard_env["MCP_STACK_DASHBOARD__SERVICE_API_KEY"] = await _ensure_service_key(settings)
            dashboard_env["MCP_STACK_DASHBOARD__SUPERVISED"] = "true"
            dashboard_admin = await _ensure_dashboard_admin(settings)
        peer_env = _peer_env(settings, names, await _ensure_service_key(settings, PEER_KEY_NAME, "write"))
        peer_env.setdefault("dashboard", {}).update(dashboard_env)
        processes: dict[str, Process] = {}

        async def start(name: str) -> None:
            processes[name] = await anyio.open_process(
                [sys.executable, "-m", "mcp_servers.cli", "serve", name, "--transport", "http"],
                env=env | peer_env.get(name, {}),
                stdin=subprocess.DEVNULL,
                stdout=None,
                stderr=None,
            )

        try:
            for name in names:
                await start(name)
            for name in names:
                await _wait_healthy(_base_url(settings, name), processes[name])
            _print_banner(settings, names, admin_token)
            if "dashboard" in names and dashboard_admin is not None:
                print(f"\nDashboard login (shown once): {dashboard_admin[0]} / {dashboard_admin[1]}", flush=True)
            async with (
                open_database(settings, BreakerRegistry(settings.breaker)) as database,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_carry_out_commands, database, settings, processes, start)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _stop_all(processes)
    print("mcp-stack stopped", file=sys.stderr)


async def _carry_out_commands(
    database: Database,
    settings: StackSettings,
    processes: dict[str, Process],
    start: Callable[[str], Awaitable[None]],
) -> None:
    """Restart children on request from the dashboard (table service_commands); only servers `up` started."""
    while True:
        await anyio.sleep(COMMAND_POLL_SECONDS)
        try:
            row = await database.fetchrow(
                "SELECT id, server, action FROM service_commands WHERE done_at IS NULL ORDER BY id LIMIT 1"
            )
        except StackError:
            continue
        if row is None:
            continue
        name = row["server"]
        result = "restarted"
        if name not in processes or name == "dashboard" or row["action"] != "restart":
            result = "refused: not a server started by mcp-stack up"
        else:
            logger.warning("restarting server on request", extra={"server": name, "command_id": row["id"]})
            await _stop_all({name: processes[name]})
            await start(name)
            try:
                await _wait_healthy(_base_url(settings, name), processes[name])
            except (ConfigurationError, TimeoutError):
                result = "failed: the server did not become healthy"
        with contextlib.suppress(StackError):
            await database.execute(
                "UPDATE service_commands SET done_at = now(), result = $2 WHERE id = $1", row["id"], result
            )


async def _stop_all(processes: dict[str, Process]) -> None:
    """SIGTERM every child, give each 10 s to drain, then SIGKILL."""
    for process in processes.values():
        if process.returncode is None:
            process.terminate()
    for process in processes.values():
        with anyio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


def _base_url(settings: StackSettings, name: str) -> str:
    port = getattr(settings.http, f"{name}_port")
    return f"http://{settings.http.host}:{port}"


def _print_banner(settings: StackSettings, names: Sequence[str], admin_token: str | None) -> None:
    lines = ["", "mcp-stack is up (Ctrl-C to stop):"]
    for name in names:
        url = _base_url(settings, name)
        suffix = "" if name == "dashboard" else "/mcp"
        lines.append(f"  {name:<10} {url}{suffix}    health: {url}/health")
    if admin_token is not None:
        lines += ["", "Admin API key (shown once, store it now):", f"  {admin_token}"]
    else:
        lines += ["", "An admin key exists already; add keys with `mcp-stack keys create --name NAME --scopes read`."]
    print("\n".join(lines), flush=True)


async def _keys(settings: StackSettings, args: argparse.Namespace) -> None:
    async with _postgres_dsn(settings) as dsn:
        settings = load_settings(postgres={**settings.postgres.model_dump(), "dsn": dsn})
        async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
            keys = KeyStore(database)
            if args.keys_command == "create":
                issued = await keys.create(args.name, [scope.strip() for scope in args.scopes.split(",")])
                print(f"key id: {issued.key.key_id}\nscopes: {','.join(issued.key.scopes)}\ntoken:  {issued.token}")
            elif args.keys_command == "list":
                for key in await keys.list():
                    state = "revoked" if key.revoked_at else "active"
                    print(f"{key.key_id}  {state:<8} {','.join(key.scopes):<20} {key.name}")
            else:
                await keys.revoke(args.key_id)
                print(f"revoked {args.key_id}")


async def _create_dashboard_user(settings: StackSettings, username: str, role: str, password: str) -> None:
    if len(password) < 8:
        raise ConfigurationError("the password must have at least 8 characters")
    store_module = importlib.import_module("mcp_servers.dashboard.store")
    auth_module = importlib.import_module("mcp_servers.dashboard.auth")
    async with _postgres_dsn(settings) as dsn:
        settings = load_settings(postgres={**settings.postgres.model_dump(), "dsn": dsn})
        async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
            password_hash = await auth_module.Passwords().hash(password)
            await store_module.DashboardStore(database).create_user(username, password_hash, role)
    print(f"created dashboard user {username} ({role})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-stack", description=__doc__.split("\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run every server over HTTP on embedded defaults")
    serve = commands.add_parser("serve", help="run one server")
    serve.add_argument("server", choices=sorted(SERVERS))
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default=None, help="HTTP bind address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default from settings)")
    worker = commands.add_parser("worker", help="run background workers without an MCP transport")
    worker.add_argument("server", choices=["ralph"])
    worker.add_argument("--concurrency", type=int, default=None, help="tasks at once (default from settings)")
    users = commands.add_parser("dashboard-user", help="manage dashboard accounts")
    user_commands = users.add_subparsers(dest="user_command", required=True)
    create_user = user_commands.add_parser("create")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--role", choices=["admin", "viewer"], default="admin")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read, write, admin, or aidb:write ...")
    key_commands.add_parser("list")
    revoke = key_commands.add_parser("revoke")
    revoke.add_argument("key_id")
    ops_commands.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `mcp-stack`; configuration and domain errors end in one line on stderr."""
    os.umask(PRIVATE_UMASK)  # nothing we or our engines create is readable by other local users
    args = _parser().parse_args(argv)
    if args.command in ops_commands.COMMANDS:
        raise SystemExit(ops_commands.main(args))
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        make_data_dir(settings.data_dir)
    except OSError as exc:  # a read-only data dir works with a DSN and a Qdrant server; each store reports its own
        logger.warning("data dir not prepared", extra={"path": str(settings.data_dir), "error": exc.strerror})
    try:
        if args.command == "up":
            anyio.run(_up, settings)
        elif args.command == "serve":
            anyio.run(_serve, args.server, args.transport, settings, args.host, args.port)
        elif args.command == "worker":
            anyio.run(_worker, args.server, settings, args.concurrency)
        elif args.command == "dashboard-user":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
            anyio.run(_create_dashboard_user, settings, args.username, args.role, password)
        else:
            anyio.run(_keys, settings, args)
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StackError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


def _serve_stdio_main(name: str) -> None:
    main(["serve", name, "--transport", "stdio", *sys.argv[1:]])


def aidb_main() -> None:
    """`mcp-aidb`: AIDB over stdio (for Claude Desktop and IDE configs)."""
    _serve_stdio_main("aidb")


def hybrid_main() -> None:
    """`mcp-hybrid`: Hybrid over stdio."""
    _serve_stdio_main("hybrid")


def ralph_main() -> None:
    """`mcp-ralph`: Ralph over stdio."""
    _serve_stdio_main("ralph")


if __name__ == "__main__":
    main()
