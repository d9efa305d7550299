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

Modules, one responsibility each:

    events.py       TelemetryEvent and Checkpoint, the records readers and checkpoint files deal in
    files.py        the directory layout: file names, rotated-file naming, the seq file, shared file helpers
    writer.py       RotationPolicy and TelemetryWriter: append, rotate, compress, expire, backpressure
    reader.py       TelemetryReader: read from a checkpoint, measure the backlog, remove consumed files
    checkpoints.py  save_checkpoint and load_checkpoint, the consumer's position on disk
    backup.py       copy_for_backup, a consistent copy of the directory for ops/backup
"""

from mcp_servers.shared.telemetry.backup import copy_for_backup
from mcp_servers.shared.telemetry.checkpoints import load_checkpoint, save_checkpoint
from mcp_servers.shared.telemetry.events import Checkpoint, TelemetryEvent
from mcp_servers.shared.telemetry.files import BACKPRESSURE_SIGNAL, BACKPRESSURE_STALE_SECONDS, LIVE_FILE
from mcp_servers.shared.telemetry.reader import TelemetryReader
from mcp_servers.shared.telemetry.writer import RotationPolicy, TelemetryWriter

__all__ = [
    "BACKPRESSURE_SIGNAL",
    "BACKPRESSURE_STALE_SECONDS",
    "LIVE_FILE",
    "Checkpoint",
    "RotationPolicy",
    "TelemetryEvent",
    "TelemetryReader",
    "TelemetryWriter",
    "copy_for_backup",
    "load_checkpoint",
    "save_checkpoint",
]
