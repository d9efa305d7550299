"""Where the consumer stopped, on disk: `save_checkpoint` replaces the file atomically, `load_checkpoint` reads it.

Separate from the reader because the reader never persists anything: the consumer decides when a batch is
done and only then saves its checkpoint.
"""

import json
from pathlib import Path

import anyio
import anyio.to_thread

from mcp_servers.shared.files import make_private_dir, write_atomically
from mcp_servers.shared.telemetry.events import Checkpoint


async def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Store `checkpoint` as JSON, replacing the previous one atomically (a crash leaves the old or the new)."""
    text = json.dumps({"seq": checkpoint.seq, "offset": checkpoint.offset}) + "\n"

    def write() -> None:
        make_private_dir(path.parent)
        write_atomically(path, text)

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
