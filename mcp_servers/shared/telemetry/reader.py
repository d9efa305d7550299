"""`TelemetryReader`, the consumer's side: events after a checkpoint, the backlog, removal of consumed files.

Also the reader's own helpers: reading a rotated file whether or not it has been gzipped since the layout was
snapshotted, and splitting complete lines from a partial tail.
"""

import contextlib
import gzip
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import anyio
import anyio.to_thread
from filelock import FileLock

from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.telemetry.events import DEPENDENCY, Checkpoint, TelemetryEvent
from mcp_servers.shared.telemetry.files import (
    LIVE_FILE,
    LOCK_FILE,
    LOCK_POLL_SECONDS,
    READ_CHUNK_BYTES,
    file_size,
    list_rotated_files,
    plain_twin,
    read_last_seq,
)

# The package's name, as before the split into modules: log records keep the `logger` they always had.
logger = logging.getLogger(__package__)


class TelemetryReader:
    """Reads events from a checkpoint across rotated files in order, then the live file; never moves them.

    Only complete lines are consumed, so an event being written is read on a later call. Lines that are not
    events (the remains of a writer that died mid-write) are skipped and counted in `skipped_lines`.
    """

    def __init__(self, directory: Path, *, lock_timeout_seconds: float = 10.0) -> None:
        self._directory = directory
        self._lock = FileLock(
            directory / LOCK_FILE, timeout=lock_timeout_seconds, thread_local=False, poll_interval=LOCK_POLL_SECONDS
        )
        self._limiter = anyio.CapacityLimiter(1)
        self.skipped_lines = 0

    async def read(self, checkpoint: Checkpoint, *, max_events: int = 1000) -> tuple[list[TelemetryEvent], Checkpoint]:
        """Up to `max_events` events after `checkpoint`, and the checkpoint after them.

        Raises:
            DependencyUnavailable: the directory cannot be read or the lock was not obtained in time.
        """
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        try:
            return await anyio.to_thread.run_sync(self._read, checkpoint, max_events, limiter=self._limiter)
        except OSError as exc:
            logger.warning("telemetry read failed", extra={"error_type": type(exc).__name__})
            raise DependencyUnavailable(DEPENDENCY, reason="cannot read events") from exc

    async def backlog_bytes(self, checkpoint: Checkpoint) -> int:
        """Bytes after `checkpoint` not yet read (a partial last line included), for lag and backpressure."""

        def measure() -> int:
            if not self._directory.is_dir():
                return 0
            with self._lock:
                rotated = list_rotated_files(self._directory)
                live_seq = read_last_seq(self._directory, rotated) + 1
                sizes = {seq: _content_size(path) for seq, path in rotated.items()}
                sizes[live_seq] = file_size(self._directory / LIVE_FILE)
            # A checkpoint ahead of the files makes `read` start over, so everything is backlog.
            start = checkpoint if checkpoint.seq <= live_seq else Checkpoint()
            return sum(
                size if seq > start.seq else max(size - start.offset, 0)
                for seq, size in sizes.items()
                if seq >= start.seq
            )

        try:
            return await anyio.to_thread.run_sync(measure, limiter=self._limiter)
        except OSError as exc:
            raise DependencyUnavailable(DEPENDENCY, reason="cannot read events") from exc

    async def remove_consumed(self, checkpoint: Checkpoint) -> int:
        """Delete rotated files wholly before `checkpoint`; returns how many. Only for the sole consumer."""

        def remove() -> int:
            if not self._directory.is_dir():
                return 0
            with self._lock:
                done = [path for seq, path in list_rotated_files(self._directory).items() if seq < checkpoint.seq]
                for path in done:
                    path.unlink(missing_ok=True)
                    plain_twin(path).unlink(missing_ok=True)
            return len(done)

        try:
            return await anyio.to_thread.run_sync(remove, limiter=self._limiter)
        except OSError as exc:
            logger.warning("telemetry cleanup failed", extra={"error_type": type(exc).__name__})
            raise DependencyUnavailable(DEPENDENCY, reason="cannot remove consumed events") from exc

    def _read(self, checkpoint: Checkpoint, max_events: int) -> tuple[list[TelemetryEvent], Checkpoint]:
        if not self._directory.is_dir():
            return [], checkpoint
        # Under the lock no rotation is half done: the live file opened here is generation `live_seq`, and the
        # open descriptor keeps reading that same file even if it is rotated a moment later.
        with self._lock:
            rotated = list_rotated_files(self._directory)
            live_seq = read_last_seq(self._directory, rotated) + 1
            try:
                live_fd: int | None = os.open(self._directory / LIVE_FILE, os.O_RDONLY)
            except FileNotFoundError:
                live_fd = None
        try:
            return self._read_from(checkpoint, max_events, rotated, live_seq, live_fd)
        finally:
            if live_fd is not None:
                os.close(live_fd)

    def _read_from(
        self,
        checkpoint: Checkpoint,
        max_events: int,
        rotated: Mapping[int, Path],
        live_seq: int,
        live_fd: int | None,
    ) -> tuple[list[TelemetryEvent], Checkpoint]:
        seq, offset = checkpoint.seq, checkpoint.offset
        if seq > live_seq:
            logger.warning("telemetry checkpoint is ahead of the files; reading from the start")
            seq, offset = 0, 0
        if 0 < seq < live_seq and seq not in rotated:
            logger.warning("telemetry file at the checkpoint is gone; continuing with the next file")
        events: list[TelemetryEvent] = []
        for file_seq in [*sorted(s for s in rotated if s >= seq), live_seq]:
            if file_seq != seq:
                seq, offset = file_seq, 0
            if file_seq == live_seq:
                if live_fd is None:
                    break
                if offset > os.fstat(live_fd).st_size:
                    logger.warning("telemetry live file is shorter than the checkpoint; reading it from the start")
                    offset = 0
                offset = self._consume(partial_pread(live_fd), offset, max_events - len(events), events)
                break
            try:
                with _open_rotated(rotated[file_seq]) as read_at:
                    offset = self._consume(read_at, offset, max_events - len(events), events)
            except FileNotFoundError:
                continue
            if len(events) >= max_events:
                break
        return events, Checkpoint(seq, offset)

    def _consume(
        self, read_at: Callable[[int, int], bytes], offset: int, limit: int, events: list[TelemetryEvent]
    ) -> int:
        """Parse up to `limit` complete lines from `offset` into `events`; returns the offset after them."""
        for line in _complete_lines(read_at, offset, limit):
            offset += len(line) + 1
            if not line.strip():
                continue
            try:
                events.append(TelemetryEvent.from_json(line))
            except ValueError:
                self.skipped_lines += 1
                logger.warning("skipping a telemetry line that is not an event", extra={"size_bytes": len(line)})
        return offset


def partial_pread(fd: int) -> Callable[[int, int], bytes]:
    """`read_at(position, size)` over an open descriptor."""
    return lambda position, size: os.pread(fd, size, position)


@contextlib.contextmanager
def _open_rotated(path: Path) -> Iterator[Callable[[int, int], bytes]]:
    """`read_at(position, size)` over a rotated file's content, gzipped or not.

    Raises FileNotFoundError only when neither the file nor its compressed twin exists (expired): a plain file
    compressed since the layout was snapshotted is read from its `.gz`.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115  # closed below; two kinds of file share one exit path
    except FileNotFoundError:
        if path.suffix == ".gz":
            raise
        path = path.with_name(path.name + ".gz")
        handle = open(path, "rb")  # noqa: SIM115
    try:
        if path.suffix != ".gz":
            fd = handle.fileno()
            yield partial_pread(fd)
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as unpacked:

            def read_at(position: int, size: int) -> bytes:
                # Reads go forward, so seek only skips what a previous call did not consume.
                unpacked.seek(position)
                return unpacked.read(size)

            yield read_at
    finally:
        handle.close()


def _complete_lines(read_at: Callable[[int, int], bytes], offset: int, limit: int) -> list[bytes]:
    """Up to `limit` newline-terminated lines from `offset`, without their newlines; a partial tail is left."""
    lines: list[bytes] = []
    buffer = b""
    position = offset
    while len(lines) < limit:
        chunk = read_at(position, READ_CHUNK_BYTES)
        if not chunk:
            break
        position += len(chunk)
        buffer += chunk
        start = 0
        while len(lines) < limit:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            lines.append(buffer[start:end])
            start = end + 1
        buffer = buffer[start:]
    return lines


def _content_size(path: Path) -> int:
    """Uncompressed size of a rotated file (gzip's trailer holds it modulo 4 GiB; files are far smaller)."""
    if path.suffix != ".gz":
        size = file_size(path)
        if size or path.exists():
            return size
        path = path.with_name(path.name + ".gz")
    try:
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return int.from_bytes(handle.read(4), "little")
    except (FileNotFoundError, OSError):
        return 0
