"""`TelemetryWriter`, the producers' side: append events, rotate by size or age, compress, expire, backpressure.

`RotationPolicy` is here because only the writer applies it. Appends, rotation and maintenance share one
lock and one view of the live file (its age is cached per inode), so they stay in one class.
"""

import contextlib
import gzip
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from filelock import FileLock, Timeout

from mcp_servers.shared.config import TelemetrySettings
from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.files import make_state_dir
from mcp_servers.shared.telemetry.events import DEPENDENCY
from mcp_servers.shared.telemetry.files import (
    BACKPRESSURE_SIGNAL,
    BACKPRESSURE_STALE_SECONDS,
    LIVE_FILE,
    LOCK_FILE,
    LOCK_POLL_SECONDS,
    MAINTAIN_LOCK_FILE,
    READ_CHUNK_BYTES,
    STAMP_FORMAT,
    list_rotated_files,
    plain_twin,
    read_last_seq,
    rotation_time,
    write_seq,
)

# The package's name, as before the split into modules: log records keep the `logger` they always had.
logger = logging.getLogger(__package__)

_TS_FIELD = re.compile(rb'"ts":"([^"]+)"')
_GZIP_LEVEL: Final = 6


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """Rotation by age, compression and retention of rotated files (size rotation is always on).

    `None` disables a limit. Retention deletes rotated files whether or not a reader consumed them: size it well
    beyond the longest time the learning pipeline may be down.
    """

    max_file_age_seconds: float | None = None
    compress: bool = False
    retention_seconds: float | None = None
    max_rotated_files: int | None = None

    @classmethod
    def from_settings(cls, settings: TelemetrySettings) -> "RotationPolicy":
        """The policy configured in TelemetrySettings (0 means "no limit")."""
        return cls(
            max_file_age_seconds=settings.max_file_age_seconds or None,
            compress=settings.compress,
            retention_seconds=settings.retention_days * 86400 or None,
            max_rotated_files=settings.max_rotated_files or None,
        )


class TelemetryWriter:
    """Appends events for one source (a server name); safe across processes and across tasks of one process.

    Each line is written whole while holding `events.jsonl.lock`, so concurrent writers never interleave bytes.
    Events emitted concurrently in one process are written together in one lock hold (group commit); each
    `emit` still returns only once its own line is in the file, and lines keep the order of the `emit` calls.
    A line left unterminated by a writer that died mid-write is closed with a newline before the next line, so
    it costs only itself (readers skip it). File I/O runs on a worker thread.

    `backpressure` follows the pipeline's signal file, looked at no more than once per `signal_check_seconds`
    (during an append, or in `check_backpressure`); `backpressure_episodes` and `events_under_backpressure`
    count what it saw, for metrics.
    """

    def __init__(
        self,
        directory: Path,
        max_file_bytes: int,
        *,
        source: str,
        lock_timeout_seconds: float = 10.0,
        policy: RotationPolicy | None = None,
        signal_check_seconds: float = 1.0,
    ) -> None:
        if max_file_bytes < 1:
            raise ValueError("max_file_bytes must be positive")
        if signal_check_seconds < 0:
            raise ValueError("signal_check_seconds must not be negative")
        self._directory = directory
        self._max_file_bytes = max_file_bytes
        self._source = source
        self._policy = policy or RotationPolicy()
        # (device, inode) of the live file and the time of its first event, for rotation by age.
        self._live_born: tuple[tuple[int, int], float] | None = None
        self._maintenance_due = False
        self._maintenance_lock = anyio.Lock()
        self._lock = FileLock(
            directory / LOCK_FILE, timeout=lock_timeout_seconds, thread_local=False, poll_interval=LOCK_POLL_SECONDS
        )
        self._directory_ready = False
        # Group commit: emitters queue (ticket, line) and take `_flush_lock` in ticket order (anyio locks are
        # FIFO); the holder writes every queued line. `_taken` is the last ticket a flush took, and `_failed`
        # the ticket range and error of the last flush if it failed (its emitters come next in the lock queue).
        self._flush_lock = anyio.Lock()
        self._pending: list[tuple[int, bytes]] = []
        self._issued = 0
        self._taken = 0
        self._failed: tuple[int, int, OSError] | None = None
        # Checked from worker threads (appends and `check_backpressure` may overlap), hence a thread lock.
        self._signal_lock = threading.Lock()
        self._signal_check_seconds = signal_check_seconds
        self._signal_checked_at = -float("inf")  # time.monotonic() of the last look at the signal file
        self._backpressure = False
        self.backpressure_episodes = 0
        self.events_under_backpressure = 0

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def backpressure(self) -> bool:
        """True while the learning pipeline asks producers to slow down (as of the last check)."""
        return self._backpressure

    async def check_backpressure(self) -> bool:
        """Look at the signal file (on a worker thread) if the last look is older than the interval; the state.

        For producers that wait on the signal: while they hold back they emit nothing, so appends alone would
        never notice that it cleared.
        """
        if time.monotonic() - self._signal_checked_at >= self._signal_check_seconds:
            await anyio.to_thread.run_sync(self._check_signal)
        return self._backpressure

    def _check_signal(self) -> None:
        """Refresh `backpressure` from the signal file unless it was looked at within the interval (blocking)."""
        with self._signal_lock:
            now = time.monotonic()
            if now - self._signal_checked_at < self._signal_check_seconds:
                return
            self._signal_checked_at = now
            try:
                age = time.time() - os.stat(self._directory / BACKPRESSURE_SIGNAL).st_mtime
            except FileNotFoundError:
                age = None
            active = age is not None and age <= BACKPRESSURE_STALE_SECONDS
            if age is not None and not active and self._backpressure:
                logger.warning("stale backpressure signal ignored", extra={"age_seconds": round(age, 1)})
            if active != self._backpressure:
                self._backpressure = active
                if active:
                    self.backpressure_episodes += 1
                logger.info(
                    "telemetry backpressure signalled" if active else "telemetry backpressure cleared",
                    extra={"source": self._source},
                )

    async def emit(self, event_type: str, /, **fields: Any) -> str:
        """Append one event with `fields` as its data; returns the event id.

        Values JSON cannot encode are written as `str(value)`.

        Raises:
            DependencyUnavailable: the directory cannot be written or the lock was not obtained in time.
        """
        event_id = uuid.uuid4().hex
        record = {
            "id": event_id,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "pid": os.getpid(),
            "source": self._source,
            "type": event_type,
            "data": fields,
        }
        # json.dumps escapes newlines inside strings, so one event is always exactly one line.
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("ascii")
        self._issued += 1
        ticket = self._issued
        self._pending.append((ticket, line))
        try:
            async with self._flush_lock:
                if ticket > self._taken:
                    await self._flush()
        except BaseException:
            # Cancelled while queued: withdraw the line unless a flush has already taken it.
            if ticket > self._taken:
                self._pending.remove((ticket, line))
            raise
        if self._failed is not None and self._failed[0] <= ticket <= self._failed[1]:
            raise DependencyUnavailable(DEPENDENCY, reason="cannot append events") from self._failed[2]
        if self._maintenance_due and not self._maintenance_lock.locked():
            # After a rotation, the emit that caused it compresses and expires files; the others go on.
            await self.maintain()
        return event_id

    async def maintain(self) -> None:
        """Rotate an over-age live file, compress rotated files, delete expired ones; never raises for I/O.

        Safe to call from several processes: one does the work, the others return at once.
        """
        async with self._maintenance_lock:
            self._maintenance_due = False
            try:
                await anyio.to_thread.run_sync(self._maintain)
            except OSError as exc:  # includes filelock.Timeout
                logger.warning("telemetry maintenance failed", extra={"error_type": type(exc).__name__})

    def _maintain(self) -> None:
        if not self._directory.is_dir():
            return
        try:
            maintain_lock = FileLock(self._directory / MAINTAIN_LOCK_FILE, timeout=0, thread_local=False)
            maintain_lock.acquire()
        except Timeout:
            return  # another process is at it
        try:
            if self._policy.max_file_age_seconds is not None:
                with self._lock:
                    live = self._directory / LIVE_FILE
                    try:
                        fd = os.open(live, os.O_RDONLY)
                    except FileNotFoundError:
                        fd = -1
                    if fd >= 0:
                        try:
                            too_old = self._live_too_old(fd)
                        finally:
                            os.close(fd)
                        if too_old:
                            self._rotate(live)
            if self._policy.compress:
                for seq, path in sorted(list_rotated_files(self._directory).items()):
                    if path.suffix != ".gz":
                        self._compress(seq, path)
            self._expire()
        finally:
            maintain_lock.release()

    def _compress(self, seq: int, path: Path) -> None:
        """Gzip one rotated file beside it, then swap it in under the writers' lock."""
        target = path.with_name(path.name + ".gz")
        temporary = path.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(path, "rb") as source, open(temporary, "wb") as raw:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0) as packed:
                    shutil.copyfileobj(source, packed, READ_CHUNK_BYTES)
                raw.flush()
                os.fsync(raw.fileno())
            with self._lock:
                if not path.exists():  # expired or removed meanwhile
                    temporary.unlink(missing_ok=True)
                    return
                os.replace(temporary, target)
                path.unlink()
        except FileNotFoundError:
            temporary.unlink(missing_ok=True)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _expire(self) -> None:
        policy = self._policy
        if policy.retention_seconds is None and policy.max_rotated_files is None:
            return
        with self._lock:
            rotated = sorted(list_rotated_files(self._directory).items())
            doomed: list[Path] = []
            if policy.max_rotated_files is not None and len(rotated) > policy.max_rotated_files:
                doomed += [path for _, path in rotated[: len(rotated) - policy.max_rotated_files]]
            if policy.retention_seconds is not None:
                cutoff = time.time() - policy.retention_seconds
                doomed += [path for _, path in rotated if rotation_time(path) < cutoff and path not in doomed]
            for path in doomed:
                path.unlink(missing_ok=True)
                plain_twin(path).unlink(missing_ok=True)
        if doomed:
            logger.info("telemetry files expired", extra={"files": len(doomed)})

    def _live_too_old(self, fd: int) -> bool:
        """True when the live file's first event is older than the age limit (called with the lock held)."""
        limit = self._policy.max_file_age_seconds
        if limit is None:
            return False
        status = os.fstat(fd)
        if status.st_size == 0:
            return False
        identity = (status.st_dev, status.st_ino)
        if self._live_born is None or self._live_born[0] != identity:
            match = _TS_FIELD.search(os.pread(fd, 256, 0))
            born = time.time()
            if match is not None:
                with contextlib.suppress(ValueError):
                    born = datetime.fromisoformat(match.group(1).decode("ascii")).timestamp()
            self._live_born = (identity, born)
        return time.time() - self._live_born[1] > limit

    async def _flush(self) -> None:
        """Write every queued line; called with `_flush_lock` held."""
        batch, self._pending = self._pending, []
        first, self._taken = batch[0][0], batch[-1][0]
        self._failed = None
        # Shielded: once lines are handed to the thread, their emitters must learn the outcome.
        with anyio.CancelScope(shield=True):
            try:
                if await anyio.to_thread.run_sync(self._append, [line for _, line in batch]):
                    self._maintenance_due = True
            except OSError as exc:  # includes filelock.Timeout, a TimeoutError
                logger.warning(
                    "telemetry append failed", extra={"error_type": type(exc).__name__, "events": len(batch)}
                )
                self._failed = (first, self._taken, exc)

    def _append(self, lines: list[bytes]) -> bool:
        """Append `lines`; True if the live file was rotated (maintenance is then due)."""
        if not self._directory_ready:
            make_state_dir(self._directory)
            self._directory_ready = True
        self._check_signal()
        if self._backpressure:
            # Written all the same: backpressure slows producers down, it never drops their events.
            self.events_under_backpressure += len(lines)
        live = self._directory / LIVE_FILE
        rotated = False
        with self._lock:
            fd = os.open(live, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                unterminated = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
                too_old = self._live_too_old(fd)
                for line in lines:
                    if size > 0 and (too_old or size + unterminated + len(line) > self._max_file_bytes):
                        too_old = False
                        rotated = True
                        if unterminated:
                            _write_all(fd, b"\n")
                        os.close(fd)
                        fd = -1
                        self._rotate(live)
                        fd = os.open(live, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
                        size, unterminated = 0, False
                    data = b"\n" + line if unterminated else line
                    _write_all(fd, data)
                    size, unterminated = size + len(data), False
            finally:
                if fd >= 0:
                    os.close(fd)
        return rotated

    def _rotate(self, live: Path) -> None:
        # Called with the lock held. Rename first, record the seq second: after a crash in between, the listing
        # still shows the new file and `read_last_seq` takes the maximum of both.
        seq = read_last_seq(self._directory, list_rotated_files(self._directory)) + 1
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        os.rename(live, self._directory / f"events-{stamp}-{seq:08d}.jsonl")
        write_seq(self._directory, seq)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
