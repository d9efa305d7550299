"""`mcp-stack`: load settings once, configure logging, then run a server or an operator command.

mcp-stack serve aidb --transport stdio|http    one server (stdio for Claude Desktop and IDEs; while `mcp-stack up`
                                               runs, stdio is relayed to its server: ops/stack_file.py)
mcp-stack serve dashboard --transport http     the operator dashboard alone (HTTP only)
mcp-stack worker ralph [--concurrency N]       Ralph task workers only (no MCP transport)
mcp-stack up|keys|dashboard-user|backup|restore|doctor|client-config
                                               operator commands (mcp_servers/ops/commands.py)
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

import anyio

from mcp_servers.aidb.server import create_server as create_aidb
from mcp_servers.dashboard.app import serve as serve_dashboard
from mcp_servers.hybrid.server import create_server as create_hybrid
from mcp_servers.ops import commands as ops_commands
from mcp_servers.ops import doctor, stack_file
from mcp_servers.ralph.server import create_server as create_ralph
from mcp_servers.ralph.standalone import run_workers as run_ralph_workers
from mcp_servers.shared.config import ServerName, StackSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.files import PRIVATE_UMASK, make_data_dir
from mcp_servers.shared.harness import Core, StackServer, build_core, serve_http, serve_stdio
from mcp_servers.shared.observability.logging import configure_logging
from mcp_servers.shared.peers import relay_stdio

logger = logging.getLogger(__name__)

SERVERS: Final[dict[ServerName, Callable[[Core], StackServer[Any]]]] = {
    "aidb": create_aidb,
    "hybrid": create_hybrid,
    "ralph": create_ralph,
}
"""The MCP servers; the dashboard is an HTTP app, not a StackServer (`mcp-stack serve dashboard`)."""
DASHBOARD: Final = "dashboard"


def build_server(name: ServerName, settings: StackSettings) -> StackServer[Any]:
    """Build one MCP server from settings."""
    return SERVERS[name](build_core(name, settings))


async def _serve(name: ServerName, transport: str, settings: StackSettings, host: str | None, port: int | None) -> None:
    if name == DASHBOARD:
        if transport != "http":
            raise ConfigurationError("the dashboard is HTTP only: use `mcp-stack serve dashboard --transport http`")
        await serve_dashboard(settings, host=host, port=port)
        return
    if transport == "stdio":
        running = await stack_file.find_running_stack(settings, name)
        if running is not None:
            # The stack owns the single-process stores: serve this client through its server instead.
            logger.info("stdio bridged to the running stack", extra={"server": name, "stack_pid": running.pid})
            await relay_stdio(running.urls[name], running.bridge_key)
            return
        await stack_file.stores_free(settings, (name,), what=f"mcp-{name}")
        await serve_stdio(build_server(name, settings))
    else:
        await serve_http(build_server(name, settings), host=host, port=port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-stack", description=__doc__.split("\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one server")
    serve.add_argument("server", choices=sorted([*SERVERS, DASHBOARD]))
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default=None, help="HTTP bind address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default from settings)")
    worker = commands.add_parser("worker", help="run background workers without an MCP transport")
    worker.add_argument("server", choices=["ralph"])
    worker.add_argument("--concurrency", type=int, default=None, help="tasks at once (default from settings)")
    ops_commands.add_parsers(commands)
    return parser


def _configure_logging(args: argparse.Namespace, settings: StackSettings) -> None:
    """Servers and `up` log as configured (a summary on a terminal); a one-shot command prints only its answer on
    the console (warnings aside). Every process also logs JSON to its own file under the log dir."""
    observability = settings.observability
    long_running = args.command in ("serve", "worker", "up")
    if args.command == "serve":
        process = args.server
    elif args.command == "worker":
        process = f"{args.server}-worker"
    else:
        process = "up" if args.command == "up" else "cli"
    configure_logging(
        observability.log_level,
        observability.log_format,
        console=observability.console if long_running else "full",
        console_level=None if long_running else "WARNING",
        process=process,
        log_file=settings.log_path / f"{process}.jsonl",
        max_file_bytes=observability.log_file_max_bytes,
        file_backups=observability.log_file_backups,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `mcp-stack`; configuration and domain errors end in one line on stderr."""
    os.umask(PRIVATE_UMASK)  # nothing we or our engines create is readable by other local users
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        # Doctor reports a bad configuration as a finding instead of stopping at it.
        raise SystemExit(doctor.main())
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    data_dir_error = None
    try:
        make_data_dir(settings.data_dir)
    except OSError as exc:  # a read-only data dir works with a DSN and a Qdrant server; each store reports its own
        data_dir_error = exc
    _configure_logging(args, settings)
    if data_dir_error is not None:
        logger.warning(
            "data dir not prepared", extra={"path": str(settings.data_dir), "error": data_dir_error.strerror}
        )
    try:
        if args.command == "serve":
            anyio.run(_serve, args.server, args.transport, settings, args.host, args.port)
        elif args.command == "worker":
            anyio.run(lambda: run_ralph_workers(settings, concurrency=args.concurrency))
        else:
            ops_commands.run(args, settings)
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StackError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


def _serve_stdio_main(name: ServerName) -> None:
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
