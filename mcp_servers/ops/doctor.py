"""`mcp-stack doctor`: check configuration, database, vector index, embedder, LLM backends, keys and ports.

Each check yields findings (ok, warn, fail) with one line of detail that says what to change. Warnings are
worth reading but do not fail the run; any failure makes the exit status 1. Nothing is modified, except that an
embedded PostgreSQL that is not running is started for the check and stopped again.
"""

import contextlib
import json
import shutil
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import anyio.to_thread
import asyncpg
import httpx

from mcp_servers.ralph.sandbox import Sandbox, SandboxUnavailable
from mcp_servers.shared.config import ServerName, StackSettings, load_settings
from mcp_servers.shared.embeddings.factory import create_embedder
from mcp_servers.shared.embeddings.provision import invalid_files, model_dir_for
from mcp_servers.shared.errors import ConfigurationError, StackError
from mcp_servers.shared.llm.factory import read_api_key
from mcp_servers.shared.observability.logging import configure_logging
from mcp_servers.shared.postgres.embedded import cluster_dir
from mcp_servers.shared.postgres.migrate import load_migrations
from mcp_servers.shared.postgres.pool import database_dsn
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.runtime_config import apply_overrides, valid_overrides

__all__ = ["Finding", "format_report", "main", "run_checks"]

Status = Literal["ok", "warn", "fail"]
_PROBE_TIMEOUT_SECONDS: Final = 5.0
_HTTP_SERVERS: Final[tuple[ServerName, ...]] = ("aidb", "hybrid", "ralph", "dashboard")


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report."""

    check: str
    status: Status
    detail: str


Emit = Callable[[str, Status, str], None]


async def run_checks(settings: StackSettings) -> list[Finding]:
    """Run every check against `settings` and return the findings in report order."""
    findings: list[Finding] = []

    def emit(check: str, status: Status, detail: str) -> None:
        findings.append(Finding(check, status, detail))

    emit("config", "ok", f"settings valid; data dir {settings.data_dir}")
    await _check_data_dir(settings, emit)
    await _guard("database", emit, _check_database(settings, emit))
    await _guard("vectors", emit, _check_vectors(settings, emit))
    await _guard("embedder", emit, _check_embedder(settings, emit))
    effective, users = await _live_state(settings)
    await _guard("llm", emit, _check_llm_backends(effective, emit))
    await _check_features(effective, users, emit)
    await _check_auth(settings, emit)
    await _check_sandbox(settings, emit)
    await _check_ports(settings, emit)
    return findings


async def _guard(check: str, emit: Emit, work: Awaitable[None]) -> None:
    """A check that crashes is a finding, not a traceback; the other checks still run."""
    try:
        await work
    except StackError as exc:
        emit(check, "fail", str(exc))
    except (OSError, httpx.HTTPError, asyncpg.PostgresError) as exc:
        emit(check, "fail", f"{type(exc).__name__}: {exc}")


async def _check_data_dir(settings: StackSettings, emit: Emit) -> None:
    path = anyio.Path(settings.data_dir)
    if not await path.exists():
        emit("data dir", "warn", f"{settings.data_dir} does not exist yet (created on first start)")
        return
    probe = path / f".doctor-{id(settings)}"
    try:
        await probe.write_text("", encoding="utf-8")
        await probe.unlink()
    except OSError as exc:
        emit("data dir", "fail", f"{settings.data_dir} is not writable ({exc.strerror}); fix its owner or permissions")
        return
    mode = stat.S_IMODE((await path.stat()).st_mode)
    if mode & 0o077:
        emit("data dir", "warn", f"{settings.data_dir} is mode {mode:04o}: other users may enter it; chmod 700 it")
        return
    emit("data dir", "ok", f"{settings.data_dir} is writable and private")


@contextlib.asynccontextmanager
async def _dsn(settings: StackSettings, emit: Emit) -> AsyncIterator[str | None]:
    cluster = cluster_dir(settings.data_dir)
    # A cluster an earlier version kept in the data dir is moved to `cluster` when it starts.
    paths = (cluster, settings.data_dir / "postgres")
    if settings.postgres.dsn is None and not any([await anyio.Path(path).exists() for path in paths]):
        emit("database", "warn", f"embedded PostgreSQL is not initialised yet (created in {cluster} on first start)")
        yield None
        return
    async with database_dsn(settings) as dsn:
        yield dsn


async def _check_database(settings: StackSettings, emit: Emit) -> None:
    async with _dsn(settings, emit) as dsn:
        if dsn is None:
            return
        try:
            connection = await asyncpg.connect(dsn, timeout=settings.postgres.connect_timeout_seconds)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            emit("database", "fail", f"cannot connect ({type(exc).__name__}); check MCP_STACK_POSTGRES__DSN")
            return
        try:
            version = await connection.fetchval("SHOW server_version")
            emit("database", "ok", f"PostgreSQL {str(version).split()[0]} answers")
            await _check_migrations(connection, emit)
            await _check_keys(connection, settings, emit)
        finally:
            await connection.close()


async def _check_migrations(connection: asyncpg.Connection, emit: Emit) -> None:
    expected = {migration.version: migration for migration in await anyio.to_thread.run_sync(load_migrations)}
    if not await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        emit("migrations", "warn", f"none applied; {len(expected)} will be applied at the first server start")
        return
    applied = {row["version"]: row["checksum"] for row in await connection.fetch("SELECT * FROM schema_migrations")}
    changed = sorted(v for v, checksum in applied.items() if v in expected and expected[v].checksum != checksum)
    unknown = sorted(set(applied) - set(expected))
    pending = sorted(set(expected) - set(applied))
    if changed:
        emit("migrations", "fail", f"migration {expected[changed[0]].label} was edited after it was applied")
    elif unknown:
        emit("migrations", "fail", f"the database has migration {unknown[0]:04d} this version does not know; upgrade")
    elif pending:
        emit("migrations", "warn", f"{len(pending)} pending (applied at the next server start)")
    else:
        emit("migrations", "ok", f"all {len(expected)} applied")


async def _check_keys(connection: asyncpg.Connection, settings: StackSettings, emit: Emit) -> None:
    if not await connection.fetchval("SELECT to_regclass('api_keys') IS NOT NULL"):
        emit("keys", "warn", "no key table yet; create an admin key with `mcp-stack keys create --scopes admin`")
        return
    rows = await connection.fetch("SELECT scopes FROM api_keys WHERE revoked_at IS NULL")
    admins = sum(1 for row in rows if "admin" in row["scopes"])
    if not rows:
        emit("keys", "warn", "no active API key; HTTP clients cannot connect (`mcp-stack keys create`)")
    elif not admins:
        emit("keys", "warn", f"{len(rows)} active keys, none with the admin scope")
    else:
        emit("keys", "ok", f"{len(rows)} active keys, {admins} with the admin scope")


async def _check_vectors(settings: StackSettings, emit: Emit) -> None:
    dimension = settings.embedder.dimension
    if settings.vectors.backend == "qdrant" and settings.vectors.url:
        await _check_qdrant_server(settings, emit)
        return
    if settings.vectors.backend == "qdrant":
        emit("vectors", "warn", "qdrant-client local mode (tests and development only; single process)")
        return
    base = anyio.Path(settings.vector_path)
    metas = [meta async for meta in base.glob("*/edge/*/collection.json")] if await base.exists() else []
    metas += [meta async for meta in base.glob("edge/*/collection.json")] if await base.exists() else []
    if not metas:
        emit("vectors", "ok", f"Qdrant Edge in {settings.vector_path} (no collections yet)")
        return
    wrong = []
    for meta in metas:
        try:
            stored = int(json.loads(await meta.read_text(encoding="utf-8"))["dimension"])
        except (ValueError, KeyError, TypeError):
            emit("vectors", "fail", f"unreadable collection metadata {meta}; restore it from a backup or reindex")
            return
        if stored != dimension:
            wrong.append(f"{meta.parent.name} ({stored})")
    if wrong:
        emit(
            "vectors",
            "fail",
            f"collections {', '.join(wrong)} do not match MCP_STACK_EMBEDDER__DIMENSION={dimension}; reindex",
        )
    else:
        emit("vectors", "ok", f"Qdrant Edge: {len(metas)} collections of dimension {dimension}")


async def _check_qdrant_server(settings: StackSettings, emit: Emit) -> None:
    url = str(settings.vectors.url).rstrip("/")
    headers = {"api-key": settings.vectors.api_key.get_secret_value()} if settings.vectors.api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=_PROBE_TIMEOUT_SECONDS) as client:
        try:
            response = await client.get("/collections")
        except httpx.TransportError:
            emit("vectors", "fail", f"Qdrant server at {url} does not answer; check MCP_STACK_VECTORS__URL")
            return
        if response.status_code in (401, 403):
            emit("vectors", "fail", "Qdrant refused the API key; check MCP_STACK_VECTORS__API_KEY(_FILE)")
            return
        response.raise_for_status()
        names = [item["name"] for item in response.json()["result"]["collections"]]
        wrong = []
        for name in names:
            info = (await client.get(f"/collections/{name}")).json()["result"]["config"]["params"]["vectors"]
            sizes = [info["size"]] if "size" in info else [v["size"] for v in info.values() if isinstance(v, dict)]
            if any(size != settings.embedder.dimension for size in sizes):
                wrong.append(name)
    if wrong:
        emit("vectors", "fail", f"collections {', '.join(wrong)} do not match the embedder dimension; reindex")
    else:
        emit("vectors", "ok", f"Qdrant server at {url}: {len(names)} collections")


async def _check_embedder(settings: StackSettings, emit: Emit) -> None:
    if settings.embedder.backend == "onnx":
        bad = await anyio.to_thread.run_sync(invalid_files, model_dir_for(settings.embedder))
        if bad:
            emit(
                "embedder",
                "fail",
                f"tokenizer files missing or altered ({', '.join(bad)}); run "
                "`python -m mcp_servers.shared.embeddings.provision`",
            )
            return
    embedder = create_embedder(settings, BreakerRegistry(settings.breaker))
    try:
        with anyio.fail_after(120):
            actual = len(await embedder.embed_query("doctor"))
    except ConfigurationError as exc:
        emit("embedder", "fail", str(exc))
        return
    finally:
        await embedder.close()
    expected = settings.embedder.dimension
    if actual != expected:
        emit(
            "embedder",
            "fail",
            f"{settings.embedder.model} returns {actual} dimensions but MCP_STACK_EMBEDDER__DIMENSION is {expected}",
        )
    else:
        emit("embedder", "ok", f"{settings.embedder.backend} {settings.embedder.model}: {actual} dimensions")


async def _check_llm_backends(settings: StackSettings, emit: Emit) -> None:
    backends = settings.hybrid.backends
    if not backends:
        emit(
            "llm",
            "warn",
            "off: route_query cannot answer. Turn it on: `make run LLM=1` (a local model), or add a backend in the "
            "dashboard's Live configuration (hybrid.backends)",
        )
        return
    async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT_SECONDS) as client:
        for backend in backends:
            try:
                api_key = await read_api_key(backend)
            except ConfigurationError as exc:
                emit(f"llm {backend.name}", "fail", str(exc))
                continue
            base = backend.base_url.rstrip("/")
            if backend.protocol == "anthropic":
                url, headers = f"{base}/v1/models", {"x-api-key": api_key or "", "anthropic-version": "2023-06-01"}
            else:
                url, headers = f"{base}/models", {"Authorization": f"Bearer {api_key}"} if api_key else {}
            try:
                response = await client.get(url, headers=headers)
            except httpx.TransportError:
                emit(f"llm {backend.name}", "fail", f"{backend.kind} backend at {base} does not answer")
                continue
            if response.status_code in (401, 403):
                emit(f"llm {backend.name}", "fail", f"{base} refused the API key (HTTP {response.status_code})")
            elif response.status_code >= 400:
                emit(f"llm {backend.name}", "warn", f"{base} answers HTTP {response.status_code} to a model list")
            else:
                emit(
                    f"llm {backend.name}", "ok", f"{backend.kind} {backend.protocol} backend answers ({backend.model})"
                )


async def _live_state(settings: StackSettings) -> tuple[StackSettings, int | None]:
    """The settings in force (stored live overrides applied) and the number of dashboard accounts (None when
    the database cannot be read: the database check reports why)."""
    if settings.postgres.dsn is None and not await anyio.Path(cluster_dir(settings.data_dir)).exists():
        return settings, None
    try:
        async with database_dsn(settings) as dsn:
            connection = await asyncpg.connect(dsn, timeout=_PROBE_TIMEOUT_SECONDS)
            try:
                rows = await connection.fetch("SELECT key, value FROM runtime_config")
                users = int(await connection.fetchval("SELECT count(*) FROM dashboard_users"))
            finally:
                await connection.close()
    except (StackError, OSError, asyncpg.PostgresError):
        return settings, None
    stored = {row["key"]: json.loads(row["value"]) for row in rows}
    return apply_overrides(settings, valid_overrides(settings, stored)), users


async def _check_features(settings: StackSettings, users: int | None, emit: Emit) -> None:
    """One finding per headline feature that is off, with the one step that turns it on."""
    if not settings.aidb.allowed_roots:
        emit(
            "ingest",
            "warn",
            "off: ingest_path refuses every path. Turn it on: `mcp-stack up --root DIR` (make run ROOT=DIR), or "
            "add the directory in the dashboard's Live configuration (aidb.allowed_roots)",
        )
    else:
        emit("ingest", "ok", f"ingest_path may read {len(settings.aidb.allowed_roots)} root(s)")
    if not settings.ralph.command_templates:
        emit(
            "agents",
            "warn",
            'off: submit_task(backend="command") is refused. Turn it on: add an agent in the dashboard\'s Live '
            'configuration (ralph.command_templates), e.g. {"default": ["claude", "-p", "{prompt}"]}',
        )
    else:
        emit("agents", "ok", f"agent templates: {', '.join(sorted(settings.ralph.command_templates))}")
    if await anyio.to_thread.run_sync(shutil.which, "bwrap") is None:
        emit(
            "sandbox",
            "warn",
            "off: bubblewrap (bwrap) is not installed, so agent commands cannot be sandboxed. Turn it on: "
            "`sudo apt-get install bubblewrap`",
        )
    if users == 0:
        emit(
            "dashboard users",
            "warn",
            "off: nobody can log in to the dashboard. Turn it on: `mcp-stack up` creates the first account, or "
            "`mcp-stack dashboard-user create --username NAME`",
        )


async def _check_auth(settings: StackSettings, emit: Emit) -> None:
    if not settings.auth.required:
        emit("auth", "warn", "HTTP transports accept calls without a key (MCP_STACK_AUTH__REQUIRED=false)")
    else:
        emit("auth", "ok", "bearer keys required on HTTP" + (" (JWT enabled)" if settings.auth.jwt_issuer else ""))
    if not settings.rate_limit.enabled:
        emit("rate limit", "warn", "rate limiting is off (MCP_STACK_RATE_LIMIT__ENABLED=false)")


async def _check_sandbox(settings: StackSettings, emit: Emit) -> None:
    """Ralph's agents, hooks and verify commands run under bubblewrap: is it there, and does it start?"""
    ralph = settings.ralph
    if ralph.sandbox == "none":
        emit("sandbox", "warn", "Ralph runs commands unconfined (MCP_STACK_RALPH__SANDBOX=none)")
        return
    sandbox = Sandbox(ralph)
    try:
        await sandbox.ensure_available()
    except SandboxUnavailable as exc:
        # Only tasks that run commands need it; without templates or task commands that is git checkpoints alone.
        needed = bool(ralph.command_templates) or ralph.allow_task_commands
        emit("sandbox", "fail" if needed else "warn", str(exc))
        return
    who = f"uid {sandbox.run_as[0]}" if sandbox.run_as else "this user, in a user namespace"
    emit("sandbox", "ok", f"bubblewrap ({ralph.bwrap_path}) confines Ralph's commands; they run as {who}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _check_ports(settings: StackSettings, emit: Emit) -> None:
    host = settings.http.host
    if host not in ("127.0.0.1", "localhost", "::1"):
        emit("ports", "warn", f"HTTP binds {host}, not loopback: put TLS and a firewall in front")
    async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT_SECONDS) as client:
        for name in _HTTP_SERVERS:
            port = int(getattr(settings.http, f"{name}_port"))
            if port == 0:
                emit(f"port {name}", "ok", "0 (an ephemeral port is chosen at start)")
                continue
            if await anyio.to_thread.run_sync(_port_free, host, port):
                emit(f"port {name}", "ok", f"{host}:{port} is free")
                continue
            try:
                answer = await client.get(f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/health")
                ours = answer.status_code == 200 and "status" in answer.text
            except httpx.HTTPError:
                ours = False
            if ours:
                emit(f"port {name}", "ok", f"{host}:{port} is served by a running mcp-stack server")
            else:
                emit(
                    f"port {name}",
                    "fail",
                    f"{host}:{port} is taken by another program; set MCP_STACK_HTTP__{name.upper()}_PORT",
                )


_MARKS: Final[dict[Status, str]] = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]"}


def format_report(findings: list[Finding]) -> str:
    """The human-readable report with a summary line."""
    width = max((len(finding.check) for finding in findings), default=0)
    lines = [f"{_MARKS[f.status]} {f.check:<{width}}  {f.detail}" for f in findings]
    failures = sum(1 for f in findings if f.status == "fail")
    warnings = sum(1 for f in findings if f.status == "warn")
    lines.append("")
    lines.append(f"{failures} problem(s), {warnings} warning(s)" if failures or warnings else "all checks passed")
    return "\n".join(lines)


def main() -> int:
    """Load settings from the environment, run every check, print the report; 1 if anything failed."""
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(format_report([Finding("config", "fail", str(exc))]))
        return 1
    configure_logging("ERROR", settings.observability.log_format)  # the report is the output, not the logs
    findings = anyio.run(run_checks, settings)
    print(format_report(findings))
    sys.stdout.flush()
    return 1 if any(finding.status == "fail" for finding in findings) else 0
