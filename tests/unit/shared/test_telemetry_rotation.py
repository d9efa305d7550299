"""Telemetry rotation by age, gzip compression and retention: readers still see every event exactly once."""

import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from mcp_servers.shared.config import TelemetrySettings
from mcp_servers.shared.telemetry import (
    Checkpoint,
    RotationPolicy,
    TelemetryEvent,
    TelemetryReader,
    TelemetryWriter,
    copy_for_backup,
)

pytestmark = pytest.mark.anyio

ROTATED = re.compile(r"^events-(\d{8}T\d{12}Z)-(\d{8})\.jsonl(\.gz)?$")


async def names(directory: Path) -> list[str]:
    return sorted([path.name async for path in anyio.Path(directory).iterdir()])


async def rotated(directory: Path) -> list[str]:
    return [name for name in await names(directory) if ROTATED.match(name)]


async def read_all(directory: Path, start: Checkpoint | None = None) -> tuple[list[TelemetryEvent], Checkpoint]:
    checkpoint = start or Checkpoint()
    reader = TelemetryReader(directory)
    events: list[TelemetryEvent] = []
    with anyio.fail_after(10):
        while batch := await reader.read(checkpoint, max_events=7):
            found, checkpoint = batch
            if not found:
                break
            events.extend(found)
    return events, checkpoint


async def emit_many(writer: TelemetryWriter, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        await writer.emit("tick", n=n, pad="p" * (n % 50))


def old_line(days: int) -> bytes:
    ts = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="microseconds")
    record = {"id": "0" * 32, "ts": ts, "pid": 1, "source": "old", "type": "tick", "data": {"n": -1}}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def test_policy_from_settings_treats_zero_as_no_limit() -> None:
    policy = RotationPolicy.from_settings(
        TelemetrySettings(max_file_age_seconds=0, retention_days=0, max_rotated_files=0, compress=False)
    )
    assert policy == RotationPolicy()
    configured = RotationPolicy.from_settings(
        TelemetrySettings(max_file_age_seconds=60, retention_days=2, max_rotated_files=5)
    )
    assert configured == RotationPolicy(60, True, 2 * 86400, 5)


async def test_a_live_file_older_than_the_age_limit_is_rotated_before_the_next_event(tmp_path: Path) -> None:
    tmp_path.joinpath("events.jsonl").write_bytes(old_line(days=2))
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb", policy=RotationPolicy(max_file_age_seconds=3600))
    await writer.emit("fresh", n=0)
    assert len(await rotated(tmp_path)) == 1
    events, _ = await read_all(tmp_path)
    assert [event.type for event in events] == ["tick", "fresh"]
    # A young live file is left alone.
    await writer.emit("fresh", n=1)
    assert len(await rotated(tmp_path)) == 1


async def test_maintain_rotates_an_idle_old_live_file(tmp_path: Path) -> None:
    tmp_path.joinpath("events.jsonl").write_bytes(old_line(days=2))
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb", policy=RotationPolicy(max_file_age_seconds=3600))
    await writer.maintain()
    assert len(await rotated(tmp_path)) == 1 and not tmp_path.joinpath("events.jsonl").exists()


async def test_rotated_files_are_compressed_and_read_once_in_order(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="hybrid", policy=RotationPolicy(compress=True))
    await emit_many(writer, 200)
    await writer.maintain()
    files = await rotated(tmp_path)
    assert len(files) > 5 and all(name.endswith(".jsonl.gz") for name in files)
    for name in files:
        assert len(gzip.decompress(tmp_path.joinpath(name).read_bytes())) <= 1024
    events, _ = await read_all(tmp_path)
    assert [event.data["n"] for event in events] == list(range(200))


async def test_a_checkpoint_inside_a_file_stays_valid_after_the_file_is_compressed(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="hybrid", policy=RotationPolicy(compress=False))
    await emit_many(writer, 100)
    reader = TelemetryReader(tmp_path)
    first, checkpoint = await reader.read(Checkpoint(), max_events=3)
    assert checkpoint.seq == 1 and checkpoint.offset > 0
    compressing = TelemetryWriter(tmp_path, 1024, source="hybrid", policy=RotationPolicy(compress=True))
    await compressing.maintain()
    assert all(name.endswith(".gz") for name in await rotated(tmp_path))
    assert await reader.backlog_bytes(checkpoint) > 0
    rest, end = await read_all(tmp_path, checkpoint)
    assert [event.data["n"] for event in first + rest] == list(range(100))
    assert await reader.backlog_bytes(end) == 0


async def test_retention_keeps_the_newest_files_up_to_the_count(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="ralph", policy=RotationPolicy(compress=True, max_rotated_files=3))
    await emit_many(writer, 200)
    await writer.maintain()
    kept = await rotated(tmp_path)
    assert len(kept) == 3
    seqs = [int(ROTATED.match(name).group(2)) for name in kept]  # type: ignore[union-attr]
    assert seqs == sorted(seqs) and seqs[-1] == max(seqs)
    # Numbering continues and what is left is still read in order.
    events, _ = await read_all(tmp_path)
    numbers = [event.data["n"] for event in events]
    assert numbers == list(range(numbers[0], 200))


async def test_retention_deletes_files_rotated_before_the_age_limit(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="ralph", policy=RotationPolicy(retention_seconds=86400))
    await emit_many(writer, 50)
    stale = tmp_path / "events-20200101T000000000000Z-00000000.jsonl"
    stale.write_bytes(old_line(days=2000))
    await writer.maintain()
    assert not stale.exists()
    assert len(await rotated(tmp_path)) > 0


async def test_copy_for_backup_takes_every_file_and_the_live_file_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "telemetry"
    writer = TelemetryWriter(source, 1024, source="aidb", policy=RotationPolicy(compress=True))
    await emit_many(writer, 80)
    await writer.maintain()
    copied = await anyio.to_thread.run_sync(copy_for_backup, source, tmp_path / "copy")
    assert "events.jsonl" in copied and "events.seq" in copied
    assert not any(name.endswith(".lock") for name in copied)
    original, _ = await read_all(source)
    again, _ = await read_all(tmp_path / "copy")
    assert [event.id for event in again] == [event.id for event in original]
