"""The fine-tuning dataset files: append-only JSONL (OpenAI chat or ShareGPT), never a duplicate example.

PostgreSQL holds the examples (unique by content hash) and, per format, how many bytes of the file are
committed. An export cuts any uncommitted tail (left by a crash between the append and the commit), appends
the examples after the last exported id, fsyncs, and commits the new size in the same transaction that
holds the format's advisory lock.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio.to_thread

from mcp_servers.hybrid.models import TrainingDataResult, TrainingFormat
from mcp_servers.shared.files import make_state_dir
from mcp_servers.shared.postgres.pool import Database

_LOCK_BASE: Final = int.from_bytes(b"hybrdset", "big") & 0x7FFF_FFFF_FFFF_FF00
_FORMAT_KEYS: Final = {"openai": 1, "sharegpt": 2}
_BATCH: Final = 5000
_SHAREGPT_ROLES: Final = {"system": "system", "user": "human", "assistant": "gpt"}


def dataset_path(directory: Path, fmt: TrainingFormat) -> Path:
    """The file of one format."""
    return directory / f"training-{fmt}.jsonl"


def render(messages: Sequence[dict[str, str]], fmt: TrainingFormat) -> str:
    """One example as one JSON line of the format."""
    record: dict[str, Any]
    if fmt == "openai":
        record = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    else:
        record = {"conversations": [{"from": _SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _append(path: Path, committed_bytes: int, lines: Sequence[str]) -> tuple[int, bool]:
    """Cut the file to `committed_bytes`, append `lines`, fsync; returns (size, reset) — reset if it was short."""
    make_state_dir(path.parent)  # interaction text: private, also when an earlier version made the dir 0755
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        size = os.fstat(fd).st_size
        if size < committed_bytes:
            return size, True
        os.ftruncate(fd, committed_bytes)
        data = "".join(lines).encode("utf-8")
        view = memoryview(data)
        position = committed_bytes
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written
        os.fsync(fd)
        return position, False
    finally:
        os.close(fd)


def _truncate(path: Path) -> None:
    make_state_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640))


async def export_training_data(database: Database, directory: Path, fmt: TrainingFormat) -> TrainingDataResult:
    """Append every example not yet in the format's file; safe against crashes and concurrent exports."""
    path = dataset_path(directory, fmt)
    appended = 0
    while True:
        async with database.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_BASE + _FORMAT_KEYS[fmt])
            await conn.execute("INSERT INTO hybrid_dataset_exports (format) VALUES ($1) ON CONFLICT DO NOTHING", fmt)
            state = await conn.fetchrow(
                "SELECT last_example_id, examples, bytes FROM hybrid_dataset_exports WHERE format = $1", fmt
            )
            assert state is not None
            rows = await conn.fetch(
                "SELECT id, messages FROM hybrid_training_examples WHERE id > $1 ORDER BY id LIMIT $2",
                state["last_example_id"],
                _BATCH,
            )
            lines = [render(_messages(row["messages"]), fmt) for row in rows]
            size, reset = await anyio.to_thread.run_sync(_append, path, int(state["bytes"]), lines)
            if reset:
                # The file lost committed bytes (deleted or cut by hand): rebuild it from the first example.
                await anyio.to_thread.run_sync(_truncate, path)
                await conn.execute(
                    "UPDATE hybrid_dataset_exports SET last_example_id = 0, examples = 0, bytes = 0 WHERE format = $1",
                    fmt,
                )
                appended = 0
                continue
            total = int(state["examples"]) + len(rows)
            await conn.execute(
                """UPDATE hybrid_dataset_exports SET last_example_id = $2, examples = $3, bytes = $4,
                       updated_at = now() WHERE format = $1""",
                fmt,
                rows[-1]["id"] if rows else state["last_example_id"],
                total,
                size,
            )
        appended += len(rows)
        if len(rows) < _BATCH:
            return TrainingDataResult(
                format=fmt, path=str(path), examples_total=total, examples_appended=appended, bytes=size
            )


def _messages(value: Any) -> list[dict[str, str]]:
    data = json.loads(value) if isinstance(value, str) else value
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in data]
