"""`mcp-stack client-config`: configuration snippets for MCP clients, per server, stdio or HTTP.

stdio snippets start `mcp-stack serve <server> --transport stdio` by absolute path, with the environment the
server needs (secrets only as `*_FILE` paths, never values). HTTP snippets name the `/mcp` URL and send the API
key from an environment variable or prompt (`MCP_STACK_API_KEY`), never a literal key.
"""

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Final, Literal

from mcp_servers.shared.config import CONFIG_FILE_VARIABLE, ENV_PREFIX, StackSettings

__all__ = ["API_KEY_VARIABLE", "CLIENTS", "SERVERS", "Client", "render", "stdio_command"]

Client = Literal["claude-desktop", "claude-code", "vscode", "cursor", "inspector"]
CLIENTS: Final[tuple[Client, ...]] = ("claude-desktop", "claude-code", "vscode", "cursor", "inspector")
SERVERS: Final = ("aidb", "hybrid", "ralph")
API_KEY_VARIABLE: Final = "MCP_STACK_API_KEY"
_SECRET_WORDS: Final = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "DSN", "PRIVATE", "PUBLIC_KEY", "REDIS_URL")
_INSPECTOR: Final = "npx -y @modelcontextprotocol/inspector --cli"


def stdio_command(server: str) -> list[str]:
    """argv that serves `server` over stdio: the `mcp-<server>` script beside this Python, else `python -m`."""
    # Not resolved: a venv's python is a symlink to the base interpreter, which would lose the venv.
    executable = Path(sys.executable).absolute()
    script = executable.parent / f"mcp-{server}"
    if script.is_file():
        return [str(script)]
    return [str(executable), "-m", "mcp_servers.cli", "serve", server, "--transport", "stdio"]


def stdio_environment(settings: StackSettings) -> dict[str, str]:
    """The stack variables a stdio server needs: the data dir, non-secret MCP_STACK_* and every *_FILE path."""
    environment = {f"{ENV_PREFIX}DATA_DIR": str(settings.data_dir.absolute())}
    for name, value in sorted(os.environ.items()):
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}DATA_DIR":
            continue
        if name.endswith("_FILE") or name == CONFIG_FILE_VARIABLE:
            environment[name] = str(Path(value).absolute())
        elif not any(word in name for word in _SECRET_WORDS):
            environment[name] = value
        else:
            print(f"mcp-stack: {name} is not copied into the snippet; use {name}_FILE instead", file=sys.stderr)
    if settings.postgres.dsn is not None and f"{ENV_PREFIX}POSTGRES__DSN_FILE" not in environment:
        print(
            f"mcp-stack: the snippet has no database DSN; set {ENV_PREFIX}POSTGRES__DSN_FILE to a file holding it",
            file=sys.stderr,
        )
    return environment


def _url(settings: StackSettings, server: str, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{server}/mcp"
    host = settings.http.host if settings.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{getattr(settings.http, f'{server}_port')}/mcp"


def _entry(settings: StackSettings, client: Client, server: str, http: bool, base_url: str | None) -> dict[str, Any]:
    if not http:
        command = stdio_command(server)
        entry: dict[str, Any] = {"command": command[0], "args": command[1:], "env": stdio_environment(settings)}
        if client in ("claude-code", "vscode"):
            entry = {"type": "stdio", **entry}
        return entry
    url = _url(settings, server, base_url)
    if client == "claude-desktop":
        # Claude Desktop's config file starts local processes only; mcp-remote bridges stdio to HTTP.
        return {
            "command": "npx",
            "args": ["-y", "mcp-remote", url, "--header", f"Authorization: Bearer ${{{API_KEY_VARIABLE}}}"],
            "env": {API_KEY_VARIABLE: "<paste a key from `mcp-stack keys create`>"},
        }
    if client == "claude-code":
        return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer ${{{API_KEY_VARIABLE}}}"}}
    if client == "vscode":
        return {"type": "http", "url": url, "headers": {"Authorization": "Bearer ${input:mcp-stack-api-key}"}}
    return {"url": url, "headers": {"Authorization": f"Bearer ${{env:{API_KEY_VARIABLE}}}"}}


def render(
    settings: StackSettings,
    client: Client,
    servers: tuple[str, ...] = SERVERS,
    *,
    http: bool = False,
    base_url: str | None = None,
) -> str:
    """The snippet for `client`: JSON for config files, shell commands for the Inspector CLI."""
    if client == "inspector":
        return _inspector(settings, servers, http=http, base_url=base_url)
    entries = {server: _entry(settings, client, server, http, base_url) for server in servers}
    if client == "vscode":
        document: dict[str, Any] = {"servers": entries}
        if http:
            document["inputs"] = [
                {
                    "type": "promptString",
                    "id": "mcp-stack-api-key",
                    "description": "mcp-stack API key",
                    "password": True,
                }
            ]
    else:
        document = {"mcpServers": entries}
    return json.dumps(document, indent=2)


def _inspector(settings: StackSettings, servers: tuple[str, ...], *, http: bool, base_url: str | None) -> str:
    lines = ["# MCP Inspector CLI (add --method tools/call --tool-name NAME --tool-arg k=v to call a tool)"]
    for server in servers:
        if http:
            target = (
                f'{shlex.quote(_url(settings, server, base_url))} --header "Authorization: Bearer ${API_KEY_VARIABLE}"'
            )
        else:
            env = " ".join(f"-e {shlex.quote(f'{k}={v}')}" for k, v in stdio_environment(settings).items())
            # The target goes first: --header and -e are variadic in the Inspector CLI.
            target = f"{shlex.join(stdio_command(server))} {env}"
        lines += [f"# {server}", f"{_INSPECTOR} {target} --method tools/list"]
    return "\n".join(lines)
