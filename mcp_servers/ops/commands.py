"""The operator subcommands of `mcp-stack` (cli.py loads settings, configures logging and delegates here).

mcp-stack up [--root DIR]... [--local-llm]             every server over HTTP, supervised (ops/supervisor.py)
mcp-stack keys create|list|revoke                      API keys for the HTTP transports (each may have its own rate)
mcp-stack dashboard-user create --username U           a dashboard account (password from stdin or a prompt)
mcp-stack dashboard-user reset-password --username U   a new password (stdin, a prompt or --generate); ends sessions
mcp-stack backup ARCHIVE [--vectors snapshot|skip]     one archive: database, vectors, telemetry, config
mcp-stack restore ARCHIVE                              into an empty database and empty data directories
mcp-stack doctor                                       check everything; non-zero exit on problems
mcp-stack client-config CLIENT [--server S] [--http]   a configuration snippet for an MCP client
mcp-stack reindex [--project P]                        rebuild AIDB's vector index from PostgreSQL (running or not)
"""

import argparse
import functools
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
    up = commands.add_parser("up", help="run every server over HTTP on embedded defaults")
    _add_up_options(up)
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read", help="comma-separated: read, write, admin, or aidb:write ...")
    create.add_argument(
        "--calls-per-minute",
        type=float,
        default=None,
        help="this key's own rate limit (0 < N <= 1000000; default: the server's rate_limit.calls_per_minute)",
    )
    create.add_argument(
        "--burst",
        type=int,
        default=None,
        help="calls this key may make at once (1-100000; default: the server's rate_limit.burst)",
    )
    key_commands.add_parser("list")
    revoke = key_commands.add_parser("revoke")
    revoke.add_argument("key_id")
    users = commands.add_parser("dashboard-user", help="manage dashboard accounts")
    user_commands = users.add_subparsers(dest="user_command", required=True)
    create_user = user_commands.add_parser("create")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--role", choices=["admin", "viewer"], default="admin")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_reset_password(user_commands)
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
        anyio.run(functools.partial(supervisor.up, settings, roots=tuple(args.root), local_llm=args.local_llm))
    elif args.command == "keys":
        anyio.run(_keys, settings, args)
    elif args.command == "dashboard-user" and args.user_command == "reset-password":
        _reset_password(settings, args)
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
        issued = await accounts.create_key(
            settings,
            args.name,
            [scope.strip() for scope in args.scopes.split(",")],
            calls_per_minute=args.calls_per_minute,
            burst=args.burst,
        )
        print(
            f"key id: {issued.key.key_id}\nscopes: {','.join(issued.key.scopes)}\n"
            f"rate:   {accounts.describe_rate(issued.key.rate)}\ntoken:  {issued.token}"
        )
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


# dashboard-user reset-password (the operator's way back in when the password printed by `up` is lost)


def _add_reset_password(user_commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    reset = user_commands.add_parser("reset-password", help="set a new password and end the account's sessions")
    reset.add_argument("--username", required=True)
    source = reset.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    source.add_argument("--generate", action="store_true", help="generate a password and print it")


def _reset_password(settings: StackSettings, args: argparse.Namespace) -> None:
    if args.generate:
        password = accounts.generate_password()
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("New password: ")
    anyio.run(accounts.reset_dashboard_password, settings, args.username, password)
    print(f"new password for {args.username}: {password}" if args.generate else f"password of {args.username} reset")


# up's options: what a first `make run` needs to be a working stack


def _add_up_options(up: argparse.ArgumentParser) -> None:
    up.add_argument(
        "--root",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a directory AIDB's ingest_path may read (repeatable; also editable live: aidb.allowed_roots)",
    )
    up.add_argument(
        "--local-llm",
        action="store_true",
        help="run the provisioned local model (scripts/provision-tools.sh llama) as Hybrid's local backend",
    )


async def _reindex(settings: StackSettings, project: str | None) -> None:
    print(await reindex.reindex(settings, project=project, say=lambda line: print(line, flush=True)))
