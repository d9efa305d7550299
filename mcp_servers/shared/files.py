"""Files on disk: whole-file replacement that a crash never tears, and private directories for the stack's state."""

import contextlib
import logging
import os
import stat
import uuid
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Write `data` beside `path`, flush it to disk, rename it over `path`, then flush the directory (blocking).

    Args:
        mode: permission bits of the new file; default what the process umask gives any new file.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


PRIVATE_UMASK: Final = 0o077
"""The process umask the CLI sets: files the stack or its engines create are 0600, directories 0700."""


def make_private_dir(path: Path) -> None:
    """Create `path` and each missing parent with mode 0700 (blocking); existing directories are left as they are.

    `Path.mkdir(parents=True)` gives the parents the umask's default mode; the XDG base-directory rule (create a
    missing directory 0700) is what a per-user data dir needs.
    """
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process created it first
            directory.mkdir(mode=0o700)


def tighten_dir(path: Path) -> None:
    """Strip group and other permissions from `path`, a directory only the stack uses, when we own it (blocking).

    For state directories created by earlier versions with the umask's 0755; ancestors are never touched.
    """
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == os.geteuid() and stat.S_ISDIR(info.st_mode) and mode & 0o077:
        logger.warning("made a state directory private", extra={"path": str(path), "old_mode": oct(mode)})
        path.chmod(mode & ~0o077)


def make_state_dir(path: Path) -> None:
    """A directory only the stack uses (vector store, telemetry, task workspaces, datasets): created or made 0700.

    Not for the data dir itself, which may be an operator's mount point: it is created 0700 but never changed.
    """
    make_private_dir(path)
    tighten_dir(path)


STATE_ENTRIES: Final = frozenset({"postgres", "postgres.lock", "vectors", "telemetry", "ralph", "hybrid"})
"""Names the stack creates in its data dir: one of them present means the stack has been using that dir."""


def make_data_dir(path: Path) -> None:
    """Create the data dir 0700, or make an existing one private when it already holds the stack's state (blocking).

    Earlier versions created it with the umask's 0755. A dir holding none of our state yet is the operator's (a
    mount point, a shared dir) and keeps its mode; `mcp-stack doctor` warns when others may enter it.
    """
    make_private_dir(path)
    if any((path / name).exists() for name in STATE_ENTRIES):
        tighten_dir(path)
