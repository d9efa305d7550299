"""Eight processes append telemetry at once with small rotated files, with and without gzip compression running
meanwhile; a checkpointed reader sees each event once (nothing lost to rotation or compression)."""

import gzip
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from mcp_servers.shared.telemetry import Checkpoint, TelemetryEvent, TelemetryReader, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.integration

PROCESSES = 8
EVENTS_PER_PROCESS = 1000
MAX_FILE_BYTES = 16 * 1024

# One writer process: says "ready", waits for "go" so all start together, then emits its events in order.
CHILD = """
import sys
from pathlib import Path
import anyio
from mcp_servers.shared.telemetry import RotationPolicy, TelemetryWriter

async def main(directory, worker, count, max_file_bytes, compress):
    # With compression every writer compresses after its own rotations: the processes race for the maintenance lock.
    policy = RotationPolicy(compress=compress == "1", max_file_age_seconds=3600)
    writer = TelemetryWriter(Path(directory), max_file_bytes, source=f"worker-{worker}", policy=policy)
    for n in range(count):
        # Varying sizes move the rotation point around within lines of every length.
        await writer.emit("tick", worker=worker, n=n, pad="p" * (n * 7 % 300))

print("ready", flush=True)
sys.stdin.readline()
anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
"""


async def start_writer(directory: Path, worker: int, compress: bool) -> Process:
    process = await anyio.open_process(
        [
            sys.executable,
            "-c",
            CHILD,
            str(directory),
            str(worker),
            str(EVENTS_PER_PROCESS),
            str(MAX_FILE_BYTES),
            "1" if compress else "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
    )
    assert process.stdout is not None
    with anyio.fail_after(30):
        assert await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100) == b"ready"
    return process


@pytest.mark.anyio
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
async def test_concurrent_writers_with_rotation_lose_and_repeat_nothing(tmp_path: Path, compress: bool) -> None:
    directory, checkpoint_path = tmp_path / "telemetry", tmp_path / "learning" / "checkpoint.json"
    processes = [await start_writer(directory, worker, compress) for worker in range(PROCESSES)]
    seen: list[TelemetryEvent] = []
    skipped = 0
    try:
        for process in processes:
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
        reader = TelemetryReader(directory)
        with anyio.fail_after(180):
            batches = 0
            while True:
                running = any(process.returncode is None for process in processes)
                # Each batch resumes from the checkpoint on disk, as the learning pipeline does after a restart;
                # every fifth batch also uses a fresh reader.
                checkpoint = await load_checkpoint(checkpoint_path)
                if batches % 5 == 0:
                    skipped += reader.skipped_lines
                    reader = TelemetryReader(directory)
                events, checkpoint = await reader.read(checkpoint, max_events=97)
                await save_checkpoint(checkpoint_path, checkpoint)
                seen.extend(events)
                batches += 1
                if not events:
                    if not running:
                        break
                    await anyio.sleep(0.01)
        for process in processes:
            with anyio.fail_after(10):
                assert await process.wait() == 0
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    skipped += reader.skipped_lines

    assert skipped == 0
    assert len({event.id for event in seen}) == len(seen) == PROCESSES * EVENTS_PER_PROCESS
    by_worker: dict[str, list[int]] = defaultdict(list)
    for event in seen:
        assert event.data["pad"] == "p" * (event.data["n"] * 7 % 300)
        by_worker[event.source].append(event.data["n"])
    # Each process wrote its events one after another, so the reader returns them in that order.
    assert by_worker == {f"worker-{worker}": list(range(EVENTS_PER_PROCESS)) for worker in range(PROCESSES)}
    rotated = [path async for path in anyio.Path(directory).glob("events-*.jsonl*")]
    assert len(rotated) > 20
    compressed = [path for path in rotated if path.name.endswith(".gz")]
    if compress:
        # Compression ran while the reader read: all but (at most) the files of the last rotations are gzipped.
        assert len(compressed) >= len(rotated) - PROCESSES
    else:
        assert compressed == []
    for path in rotated:
        data = await path.read_bytes()
        assert len(gzip.decompress(data) if path.name.endswith(".gz") else data) <= MAX_FILE_BYTES

    # Read once more from the start with one fresh reader: every line of every file is a whole event.
    again, _ = await TelemetryReader(directory).read(Checkpoint(), max_events=PROCESSES * EVENTS_PER_PROCESS + 1)
    assert sorted(event.id for event in again) == sorted(event.id for event in seen)
