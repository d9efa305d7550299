"""`mcp-stack backup` / `mcp-stack restore`: one tar archive of the database, vectors, telemetry and config.

    manifest.json                      format, versions, what is inside, SHA-256 and size of every other member
    postgres.dump                      pg_dump custom format of the stack's database
    vectors/<namespace>/<coll>.tar.gz  Qdrant Edge snapshots (embedded backend), or Qdrant server snapshots
    telemetry/...                      event files as they were when the database was dumped (or a little later)
    config/settings.json               the effective settings, secrets masked; config/<toml> if one was used

The database is dumped first, telemetry second: the learning pipeline's checkpoint lives in PostgreSQL and its
event-id dedup makes re-reading a few events after a restore harmless. A restore verifies every checksum before it
touches anything, and writes only into an empty database and empty vector/telemetry directories.
"""

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import anyio.to_thread
import asyncpg

from mcp_servers import __version__
from mcp_servers.ops.pgtools import choose_tool, client_environment
from mcp_servers.shared.config import CONFIG_FILE_VARIABLE, StackSettings
from mcp_servers.shared.errors import ConfigurationError, Conflict, DependencyUnavailable, InvalidRequest
from mcp_servers.shared.files import make_private_dir
from mcp_servers.shared.postgres.pool import database_dsn
from mcp_servers.shared.telemetry import copy_for_backup

__all__ = ["BackupManifest", "VectorMode", "create_backup", "describe", "read_manifest", "restore_backup"]

logger = logging.getLogger(__name__)

FORMAT: Final = "mcp-stack-backup"
FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
DUMP: Final = "postgres.dump"
_HASH_CHUNK: Final = 1024 * 1024
_PG_TIMEOUT_SECONDS: Final = 3600.0

VectorMode = Literal["snapshot", "skip"]


@dataclass(frozen=True, slots=True)
class BackupManifest:
    """What an archive holds; `files` maps member name -> (sha256 hex, size in bytes)."""

    created_at: str
    stack_version: str
    postgres_server_version: str
    pg_dump_major: int
    vector_backend: str
    vector_mode: str
    collections: tuple[tuple[str, str, str], ...]  # (namespace path, collection, member name)
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    # Vector namespaces a running server held during the backup: not in the archive, rebuilt from PostgreSQL.
    rebuilt_namespaces: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The manifest as stored in the archive."""
        return json.dumps(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": self.created_at,
                "stack_version": self.stack_version,
                "postgres": {"server_version": self.postgres_server_version, "pg_dump_major": self.pg_dump_major},
                "vectors": {
                    "backend": self.vector_backend,
                    "mode": self.vector_mode,
                    "collections": [
                        {"namespace": ns, "collection": name, "member": member} for ns, name, member in self.collections
                    ],
                    "rebuilt_namespaces": list(self.rebuilt_namespaces),
                },
                "files": {name: {"sha256": sha, "size": size} for name, (sha, size) in sorted(self.files.items())},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: bytes) -> "BackupManifest":
        """Parse a manifest; raises ValueError when it is not one of ours."""
        record = json.loads(text)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError("not an mcp-stack backup manifest")
        if record.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported backup format version {record.get('format_version')!r}")
        try:
            vectors = record["vectors"]
            return cls(
                created_at=str(record["created_at"]),
                stack_version=str(record["stack_version"]),
                postgres_server_version=str(record["postgres"]["server_version"]),
                pg_dump_major=int(record["postgres"]["pg_dump_major"]),
                vector_backend=str(vectors["backend"]),
                vector_mode=str(vectors["mode"]),
                collections=tuple(
                    (str(c["namespace"]), str(c["collection"]), str(c["member"])) for c in vectors["collections"]
                ),
                files={str(name): (str(f["sha256"]), int(f["size"])) for name, f in record["files"].items()},
                rebuilt_namespaces=tuple(str(ns) for ns in vectors.get("rebuilt_namespaces", [])),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"manifest field missing or malformed: {exc}") from None


async def _server_version(dsn: str, connect_timeout_seconds: float) -> tuple[int, str]:
    try:
        connection = await asyncpg.connect(dsn, timeout=connect_timeout_seconds)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable("postgres", reason="cannot connect") from exc
    try:
        number = int(await connection.fetchval("SHOW server_version_num"))
        text = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    return number // 10000, text.split()[0]


async def _user_relations(dsn: str, connect_timeout_seconds: float) -> int:
    connection = await asyncpg.connect(dsn, timeout=connect_timeout_seconds)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
            "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        )
    finally:
        await connection.close()
    return int(count)


async def _run_pg(command: list[str], environment: dict[str, str], what: str) -> None:
    with anyio.fail_after(_PG_TIMEOUT_SECONDS):
        result = await anyio.run_process(command, env=environment, check=False, stdin=None)
    if result.returncode != 0:
        # stderr may quote SQL or object names: log it for the operator, keep the raised message generic.
        stderr = result.stderr.decode(errors="replace")[-4000:]
        logger.error(
            "postgres client tool failed", extra={"tool": what, "exit_code": result.returncode, "stderr": stderr}
        )
        raise DependencyUnavailable("postgres", reason=f"{what} failed with exit code {result.returncode}")


def _edge_roots(settings: StackSettings) -> list[tuple[str, Path]]:
    """(namespace, Edge root): `<vectors>/edge` (namespace ".") and each server's `<vectors>/<server>/edge`."""
    base = settings.vector_path
    if not base.is_dir():
        return []
    candidates = [base / "edge", *sorted(base.glob("*/edge"))]
    return [(str(root.parent.relative_to(base)), root) for root in candidates if root.is_dir()]


def _edge_collections(root: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and (entry / "collection.json").is_file()
    )


async def _snapshot_vectors(
    settings: StackSettings, mode: VectorMode, staging: Path, skipped: list[str]
) -> tuple[tuple[str, str, str], ...]:
    """Snapshots of every vector collection; `skipped` receives the namespaces a running server holds."""
    if mode == "skip":
        return ()
    if settings.vectors.backend == "qdrant":
        from mcp_servers.ops import qdrant_snapshots  # only the qdrant backend needs httpx snapshot calls

        return await qdrant_snapshots.snapshot_all(settings, staging)
    # Adapters import their engine; only this branch needs Qdrant Edge.
    from mcp_servers.shared.vectors.edge import EdgeVectorIndex, held_by_running_server

    collections: list[tuple[str, str, str]] = []
    for namespace, root in await anyio.to_thread.run_sync(_edge_roots, settings):
        if await held_by_running_server(root):
            # A running server owns these shards. AIDB rebuilds its index from PostgreSQL when it starts after
            # the restore; the archive says which namespaces were left out.
            logger.warning("vectors held by a running server are rebuilt after restore", extra={"namespace": namespace})
            skipped.append(namespace)
            continue
        index = EdgeVectorIndex(root)
        try:
            for name in await anyio.to_thread.run_sync(_edge_collections, root):
                target = staging / "vectors" / namespace
                try:
                    written = await index.snapshot(name, target)
                except ConfigurationError:
                    raise Conflict(
                        "the embedded vector index was opened by a server while the backup ran; run "
                        "`mcp-stack backup` again"
                    ) from None
                member = f"vectors/{namespace}/{name}.tar.gz"
                await anyio.to_thread.run_sync(os.replace, written, staging / member)
                collections.append((namespace, name, member))
        finally:
            await index.close()
    return tuple(collections)


def _write_config(settings: StackSettings, staging: Path) -> None:
    directory = staging / "config"
    directory.mkdir(parents=True, exist_ok=True)
    # SecretStr fields dump as "**********": secrets never enter the config part of the archive.
    text = json.dumps(settings.model_dump(mode="json"), indent=2, sort_keys=True)
    (directory / "settings.json").write_text(text + "\n", encoding="utf-8")
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file and Path(config_file).is_file():
        shutil.copyfile(config_file, directory / Path(config_file).name)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _pack(staging: Path, archive: Path, manifest: BackupManifest) -> BackupManifest:
    """Checksum every staged file, then write manifest + files to `archive` atomically (mode 0600)."""
    members = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    files = {name: _sha256(staging / name) for name in members}
    complete = BackupManifest(**{**_fields(manifest), "files": files})
    (staging / MANIFEST).write_text(complete.to_json() + "\n", encoding="utf-8")
    partial_path = archive.with_name(f".{archive.name}.{uuid.uuid4().hex}.partial")
    try:
        fd = os.open(partial_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            # The manifest first: a reader learns what to expect before any payload.
            for name in [MANIFEST, *members]:
                tar.add(staging / name, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial_path, archive)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    return complete


def _fields(manifest: BackupManifest) -> dict[str, Any]:
    return {name: getattr(manifest, name) for name in BackupManifest.__slots__}


async def create_backup(settings: StackSettings, archive: Path, *, vectors: VectorMode = "snapshot") -> BackupManifest:
    """Write one archive of the stack's state to `archive` (replaced atomically); returns its manifest.

    Raises:
        Conflict: the embedded vector index is open by a running server (stop it or use vectors="skip").
        DependencyUnavailable: PostgreSQL or pg_dump failed.
        ConfigurationError: no suitable pg_dump is installed.
    """
    archive = Path(await anyio.Path(archive).absolute())
    await anyio.to_thread.run_sync(make_private_dir, archive.parent)
    staging = Path(
        await anyio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix=".mcp-stack-backup-", dir=archive.parent))
    )
    try:
        async with database_dsn(settings) as dsn:
            timeout = settings.postgres.connect_timeout_seconds
            major, server_version = await _server_version(dsn, timeout)
            tool = await anyio.to_thread.run_sync(partial(choose_tool, "pg_dump", exact=major, at_least=major))
            bare_dsn, environment = client_environment(dsn)
            await _run_pg(
                [
                    str(tool.path),
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--file={staging / DUMP}",
                    f"--dbname={bare_dsn}",
                ],
                environment,
                "pg_dump",
            )
        held: list[str] = []
        collections = await _snapshot_vectors(settings, vectors, staging, held)
        await anyio.to_thread.run_sync(copy_for_backup, settings.telemetry_path, staging / "telemetry")
        await anyio.to_thread.run_sync(_write_config, settings, staging)
        manifest = BackupManifest(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            stack_version=__version__,
            postgres_server_version=server_version,
            pg_dump_major=tool.major,
            vector_backend=settings.vectors.backend,
            vector_mode="rebuild" if vectors == "skip" else "snapshot",
            collections=collections,
            rebuilt_namespaces=tuple(held),
        )
        complete = await anyio.to_thread.run_sync(_pack, staging, archive, manifest)
    finally:
        await anyio.to_thread.run_sync(partial(shutil.rmtree, staging, ignore_errors=True))
    logger.info("backup written", extra={"files": len(complete.files), "collections": len(collections)})
    return complete


def _corrupted(archive: Path, detail: str) -> InvalidRequest:
    return InvalidRequest(f"backup archive {archive.name} is corrupted or not an mcp-stack backup: {detail}")


def _extract_verified(archive: Path, destination: Path) -> BackupManifest:
    """Extract into `destination`, checking every member against the manifest; raises InvalidRequest."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise _corrupted(archive, "the manifest is missing")
            handle = tar.extractfile(first)
            if handle is None:
                raise _corrupted(archive, "the manifest is unreadable")
            try:
                manifest = BackupManifest.from_json(handle.read())
            except ValueError as exc:
                raise _corrupted(archive, str(exc)) from None
            seen: set[str] = set()
            # tar.next(), not iteration: iterating a TarFile starts again with the members already read.
            while (member := tar.next()) is not None:
                if member.name not in manifest.files or not member.isfile():
                    raise _corrupted(archive, f"unexpected member {member.name!r}")
                tar.extract(member, destination, filter="data")
                digest, size = _sha256(destination / member.name)
                if (digest, size) != manifest.files[member.name]:
                    raise _corrupted(archive, f"checksum mismatch for {member.name}")
                seen.add(member.name)
    except FileNotFoundError:
        raise InvalidRequest(f"backup archive {archive} does not exist") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError) and exc.errno is not None:
            raise
        raise _corrupted(archive, "the archive is truncated or damaged") from None
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise _corrupted(archive, f"missing member {missing[0]}")
    if DUMP not in manifest.files:
        raise _corrupted(archive, "no database dump")
    return manifest


async def read_manifest(archive: Path) -> BackupManifest:
    """Verify a whole archive (every checksum) and return its manifest; raises InvalidRequest if it is damaged."""
    archive = Path(await anyio.Path(archive).absolute())
    scratch = Path(
        await anyio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix=".mcp-stack-verify-", dir=archive.parent))
    )
    try:
        return await anyio.to_thread.run_sync(_extract_verified, archive, scratch)
    finally:
        await anyio.to_thread.run_sync(partial(shutil.rmtree, scratch, ignore_errors=True))


def _check_empty(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise Conflict(f"{what} {path} is not empty; restore needs an empty one (move it away first)")


def _restore_files(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    make_private_dir(target)
    shutil.copytree(source, target, dirs_exist_ok=True)


async def restore_backup(settings: StackSettings, archive: Path) -> BackupManifest:
    """Restore `archive` into the configured (empty) database and (empty) vector and telemetry directories.

    With no DSN configured, the embedded server is initialised in `settings.data_dir`, which must be empty.

    Raises:
        InvalidRequest: the archive is missing, truncated, or a checksum does not match (nothing was changed).
        Conflict: the database or a target directory is not empty.
        DependencyUnavailable: PostgreSQL or pg_restore failed.
    """
    archive = Path(await anyio.Path(archive).absolute())
    embedded = settings.postgres.dsn is None
    if embedded:
        await anyio.to_thread.run_sync(_check_empty, settings.data_dir, "data directory")
    await anyio.to_thread.run_sync(_check_empty, settings.vector_path, "vector directory")
    await anyio.to_thread.run_sync(_check_empty, settings.telemetry_path, "telemetry directory")
    scratch_parent = settings.data_dir.parent if embedded else archive.parent
    await anyio.to_thread.run_sync(make_private_dir, scratch_parent)
    scratch = Path(
        await anyio.to_thread.run_sync(partial(tempfile.mkdtemp, prefix=".mcp-stack-restore-", dir=scratch_parent))
    )
    try:
        manifest = await anyio.to_thread.run_sync(_extract_verified, archive, scratch)
        async with database_dsn(settings) as dsn:
            timeout = settings.postgres.connect_timeout_seconds
            if await _user_relations(dsn, timeout):
                raise Conflict("the target database is not empty; restore needs an empty database")
            major, _ = await _server_version(dsn, timeout)
            tool = await anyio.to_thread.run_sync(
                partial(choose_tool, "pg_restore", exact=major, at_least=manifest.pg_dump_major)
            )
            bare_dsn, environment = client_environment(dsn)
            await _run_pg(
                [
                    str(tool.path),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    f"--dbname={bare_dsn}",
                    str(scratch / DUMP),
                ],
                environment,
                "pg_restore",
            )
        await _restore_vectors(settings, manifest, scratch)
        await anyio.to_thread.run_sync(_restore_files, scratch / "telemetry", settings.telemetry_path)
        await anyio.to_thread.run_sync(_restore_files, scratch / "config", settings.data_dir / "restored-config")
    finally:
        await anyio.to_thread.run_sync(partial(shutil.rmtree, scratch, ignore_errors=True))
    logger.info("backup restored", extra={"files": len(manifest.files), "collections": len(manifest.collections)})
    return manifest


async def _restore_vectors(settings: StackSettings, manifest: BackupManifest, scratch: Path) -> None:
    if not manifest.collections:
        return
    if manifest.vector_backend != settings.vectors.backend:
        raise InvalidRequest(
            f"the archive holds {manifest.vector_backend} vector snapshots but MCP_STACK_VECTORS__BACKEND is "
            f"{settings.vectors.backend}; restore with the same backend, then switch and run AIDB's reindex"
        )
    if settings.vectors.backend == "qdrant":
        from mcp_servers.ops import qdrant_snapshots  # only the qdrant backend needs httpx snapshot calls

        await qdrant_snapshots.restore_all(settings, manifest.collections, scratch)
        return
    from mcp_servers.shared.vectors.edge import EdgeVectorIndex

    by_namespace: dict[str, list[tuple[str, str]]] = {}
    for namespace, name, member in manifest.collections:
        by_namespace.setdefault(namespace, []).append((name, member))
    for namespace, entries in by_namespace.items():
        index = EdgeVectorIndex(settings.vector_path / namespace / "edge")
        try:
            for name, member in entries:
                await index.restore_snapshot(name, scratch / member)
        finally:
            await index.close()


def describe(manifest: BackupManifest) -> str:
    """A short human summary of an archive."""
    size = sum(size for _, size in manifest.files.values())
    vectors = (
        f"{len(manifest.collections)} vector collections"
        if manifest.vector_mode == "snapshot"
        else "no vectors (AIDB and Hybrid rebuild theirs from PostgreSQL when they start after the restore)"
    )
    if manifest.rebuilt_namespaces:
        vectors += (
            f" (not {', '.join(manifest.rebuilt_namespaces)}: held by a running server; rebuilt from PostgreSQL "
            "when that server starts after the restore)"
        )
    return (
        f"{len(manifest.files)} files, {size / 1e6:.1f} MB: PostgreSQL {manifest.postgres_server_version} dump, "
        f"{vectors}, created {manifest.created_at} by mcp-stack {manifest.stack_version}"
    )
