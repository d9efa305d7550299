"""The operator subcommands of `mcp-stack`: backup, restore, doctor, client-config (cli.py only delegates here).

mcp-stack backup ARCHIVE [--vectors snapshot|skip]     one archive: database, vectors, telemetry, config
mcp-stack restore ARCHIVE                              into an empty database and empty data directories
mcp-stack doctor                                       check everything; non-zero exit on problems
mcp-stack client-config CLIENT [--server S] [--http]   a configuration snippet for an MCP client
"""

import argparse
import sys
from pathlib import Path
from typing import Final

import anyio

from mcp_servers.ops import backup, client_config, doctor
from mcp_servers.shared.config import StackSettings, load_settings
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.observability.logging import configure_logging

__all__ = ["COMMANDS", "add_parsers", "main"]

COMMANDS: Final = ("backup", "restore", "doctor", "client-config")


def add_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register the operator subcommands on `mcp-stack`'s subparsers."""
    backup_parser = commands.add_parser("backup", help="write one archive: database, vectors, telemetry, config")
    backup_parser.add_argument("archive", type=Path)
    backup_parser.add_argument(
        "--vectors",
        choices=["snapshot", "skip"],
        default="snapshot",
        help="skip: leave vectors out (AIDB's reindex rebuilds them from PostgreSQL after a restore)",
    )
    restore_parser = commands.add_parser("restore", help="restore an archive into an empty database and data dir")
    restore_parser.add_argument("archive", type=Path)
    commands.add_parser("doctor", help="check config, database, vectors, embedder, LLM backends, keys and ports")
    clients = commands.add_parser("client-config", help="print an MCP client configuration snippet")
    clients.add_argument("client", choices=client_config.CLIENTS)
    clients.add_argument(
        "--server", action="append", choices=client_config.SERVERS, help="only this server (repeatable; default all)"
    )
    clients.add_argument("--http", action="store_true", help="connect over HTTP with a bearer key, not stdio")
    clients.add_argument("--base-url", default=None, help="HTTP base, e.g. https://mcp.example.org (default: local)")


def main(args: argparse.Namespace) -> int:
    """Run one operator subcommand; returns the exit status (errors end in one line on stderr)."""
    if args.command == "doctor":
        # Doctor reports a bad configuration as a finding instead of stopping at it.
        return doctor.main()
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        if args.command == "client-config":
            servers = tuple(args.server) if args.server else client_config.SERVERS
            print(client_config.render(settings, args.client, servers, http=args.http, base_url=args.base_url))
        elif args.command == "backup":
            anyio.run(_backup, settings, args.archive, args.vectors)
        else:
            anyio.run(_restore, settings, args.archive)
    except ConfigurationError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"mcp-stack: {exc}", file=sys.stderr)
        return 1
    return 0


async def _backup(settings: StackSettings, archive: Path, vectors: backup.VectorMode) -> None:
    manifest = await backup.create_backup(settings, archive, vectors=vectors)
    print(f"backup written to {archive}: {backup.describe(manifest)}")


async def _restore(settings: StackSettings, archive: Path) -> None:
    manifest = await backup.restore_backup(settings, archive)
    print(f"restored {archive}: {backup.describe(manifest)}")
