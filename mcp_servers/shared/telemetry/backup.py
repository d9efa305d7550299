"""`copy_for_backup`: a consistent copy of the telemetry directory for `mcp_servers.ops.backup`.

It takes the writers' lock like a reader but neither reads events nor moves files, so it stands alone.
"""

import os
import shutil
import uuid
from pathlib import Path

from filelock import FileLock

from mcp_servers.shared.files import make_private_dir
from mcp_servers.shared.telemetry.files import (
    LIVE_FILE,
    LOCK_FILE,
    LOCK_POLL_SECONDS,
    MAINTAIN_LOCK_FILE,
    READ_CHUNK_BYTES,
    file_size,
)


def copy_for_backup(directory: Path, destination: Path) -> list[str]:
    """Copy a consistent view of the telemetry files into `destination` (blocking); returns the names copied.

    Holds the writers' lock only to hard-link the rotated files and note the live file's size; the copying
    happens afterwards, so writers wait milliseconds, not for the copy.
    """
    if not directory.is_dir():
        return []
    make_private_dir(destination)
    links = directory / f".backup-{uuid.uuid4().hex}"
    links.mkdir()
    try:
        lock = FileLock(directory / LOCK_FILE, timeout=30, thread_local=False, poll_interval=LOCK_POLL_SECONDS)
        with lock:
            live_size = file_size(directory / LIVE_FILE)
            names = [
                entry.name
                for entry in os.scandir(directory)
                if entry.is_file()
                and not entry.name.startswith(".")
                and entry.name not in {LIVE_FILE, LOCK_FILE, MAINTAIN_LOCK_FILE}
            ]
            for name in names:
                os.link(directory / name, links / name)
            live_fd = os.open(directory / LIVE_FILE, os.O_RDONLY) if live_size else -1
        try:
            if live_fd >= 0:
                # Lines appended after the lock was released are not part of this view.
                with open(destination / LIVE_FILE, "wb") as out:
                    position = 0
                    while position < live_size:
                        chunk = os.pread(live_fd, min(READ_CHUNK_BYTES, live_size - position), position)
                        if not chunk:
                            break
                        out.write(chunk)
                        position += len(chunk)
                names.append(LIVE_FILE)
        finally:
            if live_fd >= 0:
                os.close(live_fd)
        for name in names:
            if name != LIVE_FILE:
                shutil.copyfile(links / name, destination / name)
        return sorted(names)
    finally:
        shutil.rmtree(links, ignore_errors=True)
