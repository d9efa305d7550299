"""The operator subcommands of `mcp-stack` (cli.py loads settings, configures logging and delegates here).

mcp-stack up                                           every server over HTTP, supervised (ops/supervisor.py)
mcp-stack keys create|list|revoke                      API keys for the HTTP transports
mcp-stack dashboard-user create --username U           a dashboard account (password from stdin or a prompt)
mcp-stack backup ARCHIVE [--vectors snapshot|skip]     one archive: database, vectors, telemetry, config
mcp-stack restore ARCHIVE                              into an empty database and empty data directories
mcp-stack doctor                                       check everything; non-zero exit on problems
mcp-stack client-config CLIENT [--server S] [--http]   a configuration snippet for an MCP client
mcp-stack reindex [--project P]                        rebuild AIDB's vector index from PostgreSQL (running or not)
"""

import argparse
import getpass
import sys
from pathlib import Path
from typing import Final

import anyio

from mcp_servers.dashboard.store import Role
from mcp_servers.ops import accounts, backup, client_config, reindex, supervisor
from mcp_servers.shared.config import StackSettings

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS: Final = ("up", "keys", "dashboard-user", "backup", "restore", "doctor", "client-config", "reindex")


def add_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register the operator subcommands on `mcp-stack`'s subparsers."""
    commands.add_parser("up", help="run every server over HTTP on embedded defaults")
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read, write, admin, or aidb:write ...")
    key_commands.add_parser("list")
    revoke = key_commands.add_parser("revoke")
    revoke.add_argument("key_id")
    users = commands.add_parser("dashboard-user", help="manage dashboard accounts")
    user_commands = users.add_subparsers(dest="user_command", required=True)
    create_user = user_commands.add_parser("create")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--role", choices=["admin", "viewer"], default="admin")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    backup_parser = commands.add_parser("backup", help="write one archive: database, vectors, telemetry, config")
    backup_parser.add_argument("archive", type=Path)
    backup_parser.add_argument(
        "--vectors",
        choices=["snapshot", "skip"],
        default="snapshot",
        help="skip: leave vectors out (AIDB reindexes from PostgreSQL when it starts after a restore)",
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
    # reindex
    reindex_parser = commands.add_parser(
        "reindex", help="rebuild AIDB's vector index from PostgreSQL (a running AIDB applies it itself)"
    )
    reindex_parser.add_argument("--project", default=None, help="only this project (default: every project)")


def run(args: argparse.Namespace, settings: StackSettings) -> None:
    """Run one operator subcommand other than `doctor` (which checks the configuration itself: `doctor.main`).

    Raises:
        StackError: ConfigurationError and the domain errors, for the caller to print as one line.
    """
    if args.command == "up":
        anyio.run(supervisor.up, settings)
    elif args.command == "keys":
        anyio.run(_keys, settings, args)
    elif args.command == "dashboard-user":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
        anyio.run(_create_dashboard_user, settings, args.username, args.role, password)
    elif args.command == "client-config":
        servers = tuple(args.server) if args.server else client_config.SERVERS
        print(client_config.render(settings, args.client, servers, http=args.http, base_url=args.base_url))
    elif args.command == "backup":
        anyio.run(_backup, settings, args.archive, args.vectors)
    elif args.command == "reindex":
        anyio.run(_reindex, settings, args.project)
    else:
        anyio.run(_restore, settings, args.archive)


async def _keys(settings: StackSettings, args: argparse.Namespace) -> None:
    if args.keys_command == "create":
        issued = await accounts.create_key(settings, args.name, [scope.strip() for scope in args.scopes.split(",")])
        print(f"key id: {issued.key.key_id}\nscopes: {','.join(issued.key.scopes)}\ntoken:  {issued.token}")
    elif args.keys_command == "list":
        for line in await accounts.list_keys(settings):
            print(line)
    else:
        await accounts.revoke_key(settings, args.key_id)
        print(f"revoked {args.key_id}")


async def _create_dashboard_user(settings: StackSettings, username: str, role: Role, password: str) -> None:
    await accounts.create_dashboard_user(settings, username, role, password)
    print(f"created dashboard user {username} ({role})")


async def _backup(settings: StackSettings, archive: Path, vectors: backup.VectorMode) -> None:
    manifest = await backup.create_backup(settings, archive, vectors=vectors)
    print(f"backup written to {archive}: {backup.describe(manifest)}")


async def _restore(settings: StackSettings, archive: Path) -> None:
    manifest = await backup.restore_backup(settings, archive)
    print(f"restored {archive}: {backup.describe(manifest)}")


async def _reindex(settings: StackSettings, project: str | None) -> None:
    print(await reindex.reindex(settings, project=project, say=lambda line: print(line, flush=True)))
