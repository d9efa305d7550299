"""The fine-tuning dataset files: append-only JSONL (OpenAI chat or ShareGPT), never a duplicate example.

PostgreSQL holds the examples (unique by content hash) and, per format, how many bytes of the file are
committed. An export cuts any uncommitted tail (left by a crash between the append and the commit), appends
the examples after the last exported id, fsyncs, and commits the new size in the same transaction that
holds the format's advisory lock (`store.dataset_export`).
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import anyio.to_thread

from mcp_servers.hybrid import store
from mcp_servers.hybrid.models import TrainingDataResult, TrainingFormat
from mcp_servers.shared.files import make_state_dir
from mcp_servers.shared.postgres.pool import Database

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
        async with store.dataset_export(database, fmt) as export:
            state = export.state
            examples = await export.examples_after(state.last_example_id, _BATCH)
            lines = [render(example.messages, fmt) for example in examples]
            size, reset = await anyio.to_thread.run_sync(_append, path, state.bytes, lines)
            if reset:
                # The file lost committed bytes (deleted or cut by hand): rebuild it from the first example.
                await anyio.to_thread.run_sync(_truncate, path)
                await export.reset()
                appended = 0
                continue
            total = state.examples + len(examples)
            last_id = examples[-1].id if examples else state.last_example_id
            await export.commit(store.ExportState(last_id, total, size))
        appended += len(examples)
        if len(examples) < _BATCH:
            return TrainingDataResult(
                format=fmt, path=str(path), examples_total=total, examples_appended=appended, bytes=size
            )
