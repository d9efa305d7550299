"""`mcp-stack`: load settings once, configure logging, build servers, run them.

mcp-stack up                                   every server over HTTP on embedded defaults
mcp-stack serve aidb --transport stdio|http    one server (stdio for Claude Desktop and IDEs)
mcp-stack keys create|list|revoke              API keys for the HTTP transports
mcp-stack worker ralph [--concurrency N]       Ralph task workers only (no MCP transport)
"""

import argparse
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import httpx
from anyio.abc import Process

from mcp_servers.shared.auth.keys import KeyStore
from mcp_servers.shared.config import ServerName, StackSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.harness import StackServer, build_core, serve_http, serve_stdio
from mcp_servers.shared.observability.logging import configure_logging
from mcp_servers.shared.postgres.embedded import embedded_postgres
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

logger = logging.getLogger(__name__)

# name -> "module:factory"; each factory takes a Core and returns a StackServer.
SERVERS: dict[str, str] = {
    "aidb": "mcp_servers.aidb.server:create_server",
    "hybrid": "mcp_servers.hybrid.server:create_server",
    "ralph": "mcp_servers.ralph.server:create_server",
}
# Started by `up` in this order: servers that others call come first.
UP_ORDER: tuple[str, ...] = ("aidb", "hybrid", "ralph", "dashboard")


def build_server(name: str, settings: StackSettings) -> StackServer[Any]:
    """Import the server's module and build it from settings."""
    module_name, factory_name = SERVERS[name].split(":")
    factory: Callable[..., StackServer[Any]] = getattr(importlib.import_module(module_name), factory_name)
    server_name: ServerName = name  # type: ignore[assignment]  # validated by argparse choices
    return factory(build_core(server_name, settings))


async def _serve(name: str, transport: str, settings: StackSettings, host: str | None, port: int | None) -> None:
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
        processes: dict[str, Process] = {}
        try:
            for name in names:
                processes[name] = await anyio.open_process(
                    [sys.executable, "-m", "mcp_servers.cli", "serve", name, "--transport", "http"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=None,
                    stderr=None,
                )
            for name in names:
                await _wait_healthy(_base_url(settings, name), processes[name])
            _print_banner(settings, names, admin_token)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
        finally:
            with anyio.CancelScope(shield=True):
                await _stop_all(processes)
    print("mcp-stack stopped", file=sys.stderr)


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
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read, write, admin, or aidb:write ...")
    key_commands.add_parser("list")
    revoke = key_commands.add_parser("revoke")
    revoke.add_argument("key_id")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `mcp-stack`; configuration and domain errors end in one line on stderr."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        if args.command == "up":
            anyio.run(_up, settings)
        elif args.command == "serve":
            anyio.run(_serve, args.server, args.transport, settings, args.host, args.port)
        elif args.command == "worker":
            anyio.run(_worker, args.server, settings, args.concurrency)
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
