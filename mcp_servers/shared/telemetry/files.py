"""The telemetry directory's layout, which writer, reader and backup must agree on.

Owns the file names (see the package docstring for what each file is), how rotated files are named and listed
(`events-<UTC time>-<seq>.jsonl[.gz]`), the seq file that keeps numbering across deleted rotated files, and
the low-level helpers more than one module needs. Helpers only one module uses live in that module.
"""

import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from mcp_servers.shared.files import write_atomically

LIVE_FILE: Final = "events.jsonl"
LOCK_FILE: Final = "events.jsonl.lock"
SEQ_FILE: Final = "events.seq"
MAINTAIN_LOCK_FILE: Final = "events.maintain.lock"
# Written by Hybrid's learning pipeline while its unconsumed backlog is above the threshold, removed below it.
BACKPRESSURE_SIGNAL: Final = "backpressure.json"
# The pipeline rewrites the signal on every refresh while it holds; an older file was left by a dead pipeline.
BACKPRESSURE_STALE_SECONDS: Final = 120.0
_ROTATED = re.compile(r"^events-(\d{8}T\d{12}Z)-(\d+)\.jsonl(\.gz)?$")
STAMP_FORMAT: Final = "%Y%m%dT%H%M%S%fZ"
READ_CHUNK_BYTES: Final = 1024 * 1024
LOCK_POLL_SECONDS: Final = 0.001


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def list_rotated_files(directory: Path) -> dict[int, Path]:
    """seq -> rotated file; when a crash left both forms of one file, the plain one (compression is redone)."""
    files: dict[int, Path] = {}
    for entry in os.scandir(directory):
        match = _ROTATED.match(entry.name)
        if match is not None:
            seq = int(match.group(2))
            if seq not in files or match.group(3) is None:
                files[seq] = Path(entry.path)
    return files


def plain_twin(path: Path) -> Path:
    """The other form of a rotated file: `x.jsonl` for `x.jsonl.gz` and `x.jsonl.gz` for `x.jsonl`."""
    return path.with_suffix("") if path.suffix == ".gz" else path.with_name(path.name + ".gz")


def rotation_time(path: Path) -> float:
    match = _ROTATED.match(path.name)
    if match is None:
        return time.time()
    return datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=UTC).timestamp()


def read_last_seq(directory: Path, rotated: Mapping[int, Path]) -> int:
    try:
        recorded = int((directory / SEQ_FILE).read_text(encoding="utf-8").strip() or 0)
    except FileNotFoundError:
        recorded = 0
    except ValueError:
        # Torn by a crash mid-write (it is replaced atomically, but be lenient): the listing still counts.
        recorded = 0
    return max(recorded, max(rotated, default=0))


def write_seq(directory: Path, seq: int) -> None:
    write_atomically(directory / SEQ_FILE, f"{seq}\n")
