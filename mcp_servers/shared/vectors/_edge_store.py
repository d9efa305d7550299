"""Files of the Edge vector store: directory lock, collection metadata, scratch dirs, snapshot archives.

Plain blocking functions: `edge.py` calls them in worker threads.
"""

import contextlib
import json
import os
import shutil
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import filelock

from mcp_servers.shared.errors import ConfigurationError
from mcp_servers.shared.files import make_private_dir, make_state_dir

META_FILE = "collection.json"
SHARD_DIR = "shard"
LOCK_FILE = ".lock"
# Scratch directories start with "." so they can never collide with a collection name.
SCRATCH_PREFIXES = (".staging-", ".restore-", ".trash-")
LAYOUT = 1


def scratch(root: Path, kind: str) -> Path:
    """A fresh scratch path under `root` ("staging", "restore" or "trash"); removed at the next start if left."""
    return root / f".{kind}-{uuid.uuid4().hex}"


def meta_json(dimension: int, dense: str, sparse: str) -> str:
    """Our metadata for a new collection."""
    return json.dumps({"layout": LAYOUT, "dimension": dimension, "dense": dense, "sparse": sparse})


def parse_meta(text: str, collection: str) -> int:
    """The dimension recorded in a collection's metadata."""
    try:
        meta = json.loads(text)
        dimension = meta["dimension"]
        if meta.get("layout") != LAYOUT or not isinstance(dimension, int) or dimension < 1:
            raise ValueError("unexpected metadata")
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"vector collection {collection!r} has unreadable metadata; restore it from a snapshot or drop it"
        ) from None
    return dimension


def lock_root(root: Path) -> filelock.BaseFileLock:
    """Create and lock the store directory (filelock.Timeout if another process holds it); clear scratch."""
    make_state_dir(root)  # the shards hold every payload: 0700, whatever the engine's file modes are
    lock = filelock.FileLock(root / LOCK_FILE, timeout=0)
    lock.acquire()
    # Leftovers of a create/restore/drop interrupted by a crash; nobody else can be using them now.
    for entry in root.iterdir():
        if entry.name.startswith(SCRATCH_PREFIXES):
            shutil.rmtree(entry, ignore_errors=True)
    return lock


def held_elsewhere(root: Path) -> bool:
    """True when another open index (a running server) holds the store at `root`."""
    lock_path = root / LOCK_FILE
    if not lock_path.is_file():
        return False
    lock = filelock.FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False


def read_meta(directory: Path) -> str | None:
    """The metadata text of a collection directory, or None if it holds no collection."""
    try:
        return (directory / META_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def remove_dir(root: Path, directory: Path) -> None:
    """Delete a collection directory if present."""
    if not directory.exists():
        return
    # Rename first: a crash mid-delete then leaves scratch, not a collection with half its files.
    trash = scratch(root, "trash")
    directory.rename(trash)
    shutil.rmtree(trash)


def swap_in(root: Path, staging: Path, target: Path) -> None:
    """Replace `target` with the complete directory `staging`."""
    if target.exists():
        trash = scratch(root, "trash")
        target.rename(trash)
        staging.rename(target)
        shutil.rmtree(trash)
    else:
        staging.rename(target)


def write_archive(collection_dir: Path, dest_dir: Path, collection: str) -> Path:
    """Archive a flushed collection directory as `<dest_dir>/<collection>-<UTC time>.tar.gz`; return its path."""
    make_private_dir(dest_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = dest_dir / f"{collection}-{stamp}.tar.gz"
    partial_path = final.with_name(final.name + ".partial")
    try:
        # The engine preallocates its WAL and storage pages (~160 MB of zeros for an empty collection); the
        # fastest gzip level squeezes those out at disk speed.
        fd = os.open(partial_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the payloads, as the shards
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as archive:
            archive.add(collection_dir / META_FILE, arcname=META_FILE)
            archive.add(collection_dir / SHARD_DIR, arcname=SHARD_DIR)
        os.replace(partial_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial_path.unlink()
        raise
    return final


def extract_archive(archive: Path, staging: Path) -> str:
    """Unpack into `staging` (refusing links and paths outside it); return the metadata text."""
    with tarfile.open(archive, "r") as tar:
        tar.extractall(staging, filter="data")
    if not (staging / SHARD_DIR).is_dir():
        raise ValueError("snapshot has no shard directory")
    meta = read_meta(staging)
    if meta is None:
        raise ValueError("snapshot has no collection metadata")
    return meta


def store_in_use(root: Path) -> bool:
    """Whether another process holds the store at `root` open (a store never opened is free).

    For a clear start-up message before anything opens it: the answer may change right after.
    """
    if not (root / LOCK_FILE).exists():
        return False
    probe = filelock.FileLock(root / LOCK_FILE, timeout=0)
    try:
        probe.acquire()
    except filelock.Timeout:
        return True
    probe.release()
    return False
