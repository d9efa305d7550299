"""Telemetry events as JSON lines, appended by many processes under one file lock, rotated, read by checkpoint.

events.jsonl                         live file; every process appends whole lines while holding the lock
events-<UTC time>-<seq>.jsonl        rotated files; `seq` (1, 2, ...) orders them, the live file comes last
events-<UTC time>-<seq>.jsonl.gz     a rotated file after compression (same content, so checkpoints stay valid)
events.seq                           the last `seq` given out, so numbering survives deleted rotated files
events.jsonl.lock                    the `filelock` lock writers share; readers take it to snapshot the layout
events.maintain.lock                 held by the one process compressing and expiring rotated files
backpressure.json                    present while the learning pipeline asks producers to slow down

The live file rotates when the next line would pass the size limit or (with a `RotationPolicy`) when its first
event is older than the age limit. Maintenance (after a rotation, or `TelemetryWriter.maintain()`) gzips rotated
files and deletes those past the retention age or count. A `.gz` replaces its `.jsonl` while the lock is held,
and a reader that finds a rotated file gone opens its `.gz`, so no event is lost to compression.
Writers look for the backpressure signal at most once per check interval, on their worker thread; they still
write every event, and producers read `TelemetryWriter.backpressure` to hold back optional work.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
from filelock import FileLock, Timeout

from mcp_servers.shared.config import TelemetrySettings
from mcp_servers.shared.errors import DependencyUnavailable

__all__ = [
    "BACKPRESSURE_SIGNAL",
    "BACKPRESSURE_STALE_SECONDS",
    "Checkpoint",
    "RotationPolicy",
    "TelemetryEvent",
    "TelemetryReader",
    "TelemetryWriter",
    "copy_for_backup",
    "load_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

LIVE_FILE: Final = "events.jsonl"
LOCK_FILE: Final = "events.jsonl.lock"
SEQ_FILE: Final = "events.seq"
MAINTAIN_LOCK_FILE: Final = "events.maintain.lock"
# Written by Hybrid's learning pipeline while its unconsumed backlog is above the threshold, removed below it.
BACKPRESSURE_SIGNAL: Final = "backpressure.json"
# The pipeline rewrites the signal on every refresh while it holds; an older file was left by a dead pipeline.
BACKPRESSURE_STALE_SECONDS: Final = 120.0
_ROTATED = re.compile(r"^events-(\d{8}T\d{12}Z)-(\d+)\.jsonl(\.gz)?$")
_STAMP_FORMAT: Final = "%Y%m%dT%H%M%S%fZ"
_TS_FIELD = re.compile(rb'"ts":"([^"]+)"')
_GZIP_LEVEL: Final = 6
_READ_CHUNK_BYTES: Final = 1024 * 1024
_LOCK_POLL_SECONDS: Final = 0.001
DEPENDENCY: Final = "telemetry"


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """One event as read back: envelope fields plus the emitter's own `data`."""

    id: str
    ts: str
    pid: int
    source: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, line: bytes) -> "TelemetryEvent":
        """Parse one line; raises ValueError when it is not an event written by TelemetryWriter."""
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        try:
            event = cls(
                id=record["id"],
                ts=record["ts"],
                pid=record["pid"],
                source=record["source"],
                type=record["type"],
                data=record.get("data", {}),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]}") from None
        if not isinstance(event.data, dict) or not isinstance(event.pid, int):
            raise ValueError("wrong field type")
        return event


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a reader stopped: the file generation `seq` and the bytes of it already consumed.

    A rotated file's generation is the `seq` in its name; the live file's is the `seq` it will get when rotated.
    A name alone cannot say this: `events.jsonl` is a different file after every rotation.
    """

    seq: int = 0
    offset: int = 0


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
            directory / LOCK_FILE, timeout=lock_timeout_seconds, thread_local=False, poll_interval=_LOCK_POLL_SECONDS
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
                for seq, path in sorted(_rotated_files(self._directory).items()):
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
                    shutil.copyfileobj(source, packed, _READ_CHUNK_BYTES)
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
            rotated = sorted(_rotated_files(self._directory).items())
            doomed: list[Path] = []
            if policy.max_rotated_files is not None and len(rotated) > policy.max_rotated_files:
                doomed += [path for _, path in rotated[: len(rotated) - policy.max_rotated_files]]
            if policy.retention_seconds is not None:
                cutoff = time.time() - policy.retention_seconds
                doomed += [path for _, path in rotated if _rotated_at(path) < cutoff and path not in doomed]
            for path in doomed:
                path.unlink(missing_ok=True)
                _plain_twin(path).unlink(missing_ok=True)
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
            self._directory.mkdir(parents=True, exist_ok=True)
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
        # still shows the new file and `_last_seq` takes the maximum of both.
        seq = _last_seq(self._directory, _rotated_files(self._directory)) + 1
        stamp = datetime.now(UTC).strftime(_STAMP_FORMAT)
        os.rename(live, self._directory / f"events-{stamp}-{seq:08d}.jsonl")
        _write_seq(self._directory, seq)


class TelemetryReader:
    """Reads events from a checkpoint across rotated files in order, then the live file; never moves them.

    Only complete lines are consumed, so an event being written is read on a later call. Lines that are not
    events (the remains of a writer that died mid-write) are skipped and counted in `skipped_lines`.
    """

    def __init__(self, directory: Path, *, lock_timeout_seconds: float = 10.0) -> None:
        self._directory = directory
        self._lock = FileLock(
            directory / LOCK_FILE, timeout=lock_timeout_seconds, thread_local=False, poll_interval=_LOCK_POLL_SECONDS
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
                rotated = _rotated_files(self._directory)
                live_seq = _last_seq(self._directory, rotated) + 1
                sizes = {seq: _content_size(path) for seq, path in rotated.items()}
                sizes[live_seq] = _size(self._directory / LIVE_FILE)
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
                done = [path for seq, path in _rotated_files(self._directory).items() if seq < checkpoint.seq]
                for path in done:
                    path.unlink(missing_ok=True)
                    _plain_twin(path).unlink(missing_ok=True)
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
            rotated = _rotated_files(self._directory)
            live_seq = _last_seq(self._directory, rotated) + 1
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
        chunk = read_at(position, _READ_CHUNK_BYTES)
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _content_size(path: Path) -> int:
    """Uncompressed size of a rotated file (gzip's trailer holds it modulo 4 GiB; files are far smaller)."""
    if path.suffix != ".gz":
        size = _size(path)
        if size or path.exists():
            return size
        path = path.with_name(path.name + ".gz")
    try:
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            return int.from_bytes(handle.read(4), "little")
    except (FileNotFoundError, OSError):
        return 0


def _rotated_files(directory: Path) -> dict[int, Path]:
    """seq -> rotated file; when a crash left both forms of one file, the plain one (compression is redone)."""
    files: dict[int, Path] = {}
    for entry in os.scandir(directory):
        match = _ROTATED.match(entry.name)
        if match is not None:
            seq = int(match.group(2))
            if seq not in files or match.group(3) is None:
                files[seq] = Path(entry.path)
    return files


def _plain_twin(path: Path) -> Path:
    """The other form of a rotated file: `x.jsonl` for `x.jsonl.gz` and `x.jsonl.gz` for `x.jsonl`."""
    return path.with_suffix("") if path.suffix == ".gz" else path.with_name(path.name + ".gz")


def _rotated_at(path: Path) -> float:
    match = _ROTATED.match(path.name)
    if match is None:
        return time.time()
    return datetime.strptime(match.group(1), _STAMP_FORMAT).replace(tzinfo=UTC).timestamp()


def copy_for_backup(directory: Path, destination: Path) -> list[str]:
    """Copy a consistent view of the telemetry files into `destination` (blocking); returns the names copied.

    Holds the writers' lock only to hard-link the rotated files and note the live file's size; the copying
    happens afterwards, so writers wait milliseconds, not for the copy.
    """
    if not directory.is_dir():
        return []
    destination.mkdir(parents=True, exist_ok=True)
    links = directory / f".backup-{uuid.uuid4().hex}"
    links.mkdir()
    try:
        lock = FileLock(directory / LOCK_FILE, timeout=30, thread_local=False, poll_interval=_LOCK_POLL_SECONDS)
        with lock:
            live_size = _size(directory / LIVE_FILE)
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
                        chunk = os.pread(live_fd, min(_READ_CHUNK_BYTES, live_size - position), position)
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


def _last_seq(directory: Path, rotated: Mapping[int, Path]) -> int:
    try:
        recorded = int((directory / SEQ_FILE).read_text(encoding="utf-8").strip() or 0)
    except FileNotFoundError:
        recorded = 0
    except ValueError:
        # Torn by a crash mid-write (it is replaced atomically, but be lenient): the listing still counts.
        recorded = 0
    return max(recorded, max(rotated, default=0))


def _write_seq(directory: Path, seq: int) -> None:
    _replace_atomically(directory / SEQ_FILE, f"{seq}\n")


def _replace_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


async def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Store `checkpoint` as JSON, replacing the previous one atomically (a crash leaves the old or the new)."""
    text = json.dumps({"seq": checkpoint.seq, "offset": checkpoint.offset}) + "\n"

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_atomically(path, text)

    await anyio.to_thread.run_sync(write)


async def load_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint stored at `path`, or the start of the stream when there is none.

    Raises:
        ValueError: the file exists but does not hold a checkpoint.
    """

    def read() -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    text = await anyio.to_thread.run_sync(read)
    if text is None:
        return Checkpoint()
    try:
        record = json.loads(text)
        seq, offset = record["seq"], record["offset"]
    except (ValueError, TypeError, KeyError):
        raise ValueError("telemetry checkpoint file does not hold a checkpoint") from None
    if not (isinstance(seq, int) and isinstance(offset, int) and seq >= 0 and offset >= 0):
        raise ValueError("telemetry checkpoint file does not hold a checkpoint")
    return Checkpoint(seq, offset)
