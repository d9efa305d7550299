"""TelemetryWriter and TelemetryReader in one process: lines, rotation, checkpoints, crash remains."""

import json
import re
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from filelock import FileLock

from mcp_servers.shared.errors import DependencyUnavailable
from mcp_servers.shared.telemetry import (
    Checkpoint,
    TelemetryEvent,
    TelemetryReader,
    TelemetryWriter,
    load_checkpoint,
    save_checkpoint,
)

ROTATED = re.compile(r"^events-\d{8}T\d{12}Z-(\d{8})\.jsonl$")


async def rotated_seqs(directory: Path) -> list[int]:
    names = [path.name async for path in anyio.Path(directory).iterdir()]
    return sorted(int(match.group(1)) for name in names if (match := ROTATED.match(name)))


async def read_all(
    reader: TelemetryReader, checkpoint: Checkpoint, batch: int = 7
) -> tuple[list[TelemetryEvent], Checkpoint]:
    events: list[TelemetryEvent] = []
    with anyio.fail_after(10):
        while True:
            batch_events, checkpoint = await reader.read(checkpoint, max_events=batch)
            if not batch_events:
                return events, checkpoint
            events.extend(batch_events)


@pytest.mark.anyio
async def test_emitted_event_is_read_back_once_with_its_envelope(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "telemetry", 1024 * 1024, source="hybrid")
    event_id = await writer.emit("interaction_tracked", interaction_id="i-1", tokens=42, tags=["a", "b"])
    reader = TelemetryReader(tmp_path / "telemetry")
    events, checkpoint = await reader.read(Checkpoint())
    assert len(events) == 1
    event = events[0]
    assert (event.id, event.source, event.type) == (event_id, "hybrid", "interaction_tracked")
    assert event.data == {"interaction_id": "i-1", "tokens": 42, "tags": ["a", "b"]}
    assert event.pid > 0 and event.ts.endswith("+00:00")
    again, same = await reader.read(checkpoint)
    assert again == [] and same == checkpoint


@pytest.mark.anyio
async def test_reading_an_empty_or_missing_directory_returns_nothing(tmp_path: Path) -> None:
    reader = TelemetryReader(tmp_path / "nothing-here")
    assert await reader.read(Checkpoint()) == ([], Checkpoint())


@pytest.mark.anyio
async def test_values_json_cannot_encode_are_written_as_text(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb")
    await writer.emit("path_seen", path=Path("/srv/docs"), note="line one\nline two ü", event_type="free name")
    events, _ = await TelemetryReader(tmp_path).read(Checkpoint())
    assert events[0].data == {"path": "/srv/docs", "note": "line one\nline two ü", "event_type": "free name"}


@pytest.mark.anyio
async def test_rotation_keeps_files_under_the_size_and_numbers_them_in_order(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="aidb")
    for index in range(60):
        await writer.emit("tick", index=index)
    seqs = await rotated_seqs(tmp_path)
    assert len(seqs) >= 5
    assert seqs == list(range(1, len(seqs) + 1))
    async for path in anyio.Path(tmp_path).glob("events*.jsonl"):
        assert (await path.stat()).st_size <= 1024
    events, _ = await read_all(TelemetryReader(tmp_path), Checkpoint())
    assert [event.data["index"] for event in events] == list(range(60))


@pytest.mark.anyio
async def test_an_event_larger_than_the_file_size_gets_a_file_of_its_own(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="aidb")
    await writer.emit("small")
    await writer.emit("big", blob="x" * 4000)
    await writer.emit("small")
    events, _ = await read_all(TelemetryReader(tmp_path), Checkpoint())
    assert [event.type for event in events] == ["small", "big", "small"]


async def emit_tick(writer: TelemetryWriter, index: int) -> None:
    await writer.emit("tick", index=index)


@pytest.mark.anyio
async def test_concurrent_emits_in_one_process_are_read_once_in_emit_order(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 4096, source="ralph")
    async with anyio.create_task_group() as tg:
        for index in range(200):
            tg.start_soon(emit_tick, writer, index)
    events, _ = await read_all(TelemetryReader(tmp_path), Checkpoint(), batch=50)
    assert [event.data["index"] for event in events] == list(range(200))


@pytest.mark.anyio
async def test_every_emit_of_a_failed_batch_raises(tmp_path: Path) -> None:
    await anyio.Path(tmp_path / "a-file").write_text("", encoding="utf-8")
    writer = TelemetryWriter(tmp_path / "a-file" / "telemetry", 1024, source="aidb")
    failures = 0

    async def emit_expecting_failure(index: int) -> None:
        nonlocal failures
        with pytest.raises(DependencyUnavailable):
            await writer.emit("tick", index=index)
        failures += 1

    async with anyio.create_task_group() as tg:
        for index in range(20):
            tg.start_soon(emit_expecting_failure, index)
    assert failures == 20


@pytest.mark.anyio
async def test_an_emit_cancelled_while_queued_is_not_written(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb")
    await writer.emit("first")
    # Another holder of the file lock (as another process would be) keeps the next flush waiting in its thread.
    other_process = FileLock(tmp_path / "events.jsonl.lock", timeout=5, thread_local=False)
    await anyio.to_thread.run_sync(other_process.acquire)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.emit, "flushing")
            await wait_all_tasks_blocked()
            queued = anyio.CancelScope()
            tg.start_soon(cancellable_emit, writer, "cancelled", queued)
            await wait_all_tasks_blocked()
            queued.cancel()
            await anyio.to_thread.run_sync(other_process.release)
    finally:
        if other_process.is_locked:
            await anyio.to_thread.run_sync(other_process.release)
    await writer.emit("last")
    events, _ = await TelemetryReader(tmp_path).read(Checkpoint())
    assert [event.type for event in events] == ["first", "flushing", "last"]


async def cancellable_emit(writer: TelemetryWriter, event_type: str, scope: anyio.CancelScope) -> None:
    with scope:
        await writer.emit(event_type)


@pytest.mark.anyio
async def test_resume_from_a_saved_checkpoint_after_the_live_file_was_rotated(tmp_path: Path) -> None:
    directory, checkpoint_path = tmp_path / "telemetry", tmp_path / "state" / "checkpoint.json"
    writer = TelemetryWriter(directory, 2048, source="hybrid")
    for index in range(5):
        await writer.emit("tick", index=index)
    first, checkpoint = await TelemetryReader(directory).read(Checkpoint(), max_events=3)
    assert await rotated_seqs(directory) == []
    await save_checkpoint(checkpoint_path, checkpoint)
    # The checkpoint points into the live file; enough new events rotate that file away.
    for index in range(5, 80):
        await writer.emit("tick", index=index)
    assert await rotated_seqs(directory)
    rest, _ = await read_all(TelemetryReader(directory), await load_checkpoint(checkpoint_path))
    assert [event.data["index"] for event in first + rest] == list(range(80))


@pytest.mark.anyio
async def test_checkpoint_round_trips_and_missing_file_means_start(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    assert await load_checkpoint(path) == Checkpoint()
    await save_checkpoint(path, Checkpoint(seq=12, offset=3456))
    await save_checkpoint(path, Checkpoint(seq=13, offset=78))
    assert await load_checkpoint(path) == Checkpoint(seq=13, offset=78)
    assert json.loads(await anyio.Path(path).read_text(encoding="utf-8")) == {"seq": 13, "offset": 78}
    assert [entry.name async for entry in anyio.Path(tmp_path).iterdir()] == ["checkpoint.json"]


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["", "not json", '{"seq": 1}', '{"seq": -1, "offset": 0}', "[1, 2]"])
async def test_loading_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path, content: str) -> None:
    path = anyio.Path(tmp_path / "checkpoint.json")
    await path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError):
        await load_checkpoint(Path(path))


@pytest.mark.anyio
async def test_a_line_being_written_is_not_consumed_and_a_dead_writers_fragment_is_skipped(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb")
    reader = TelemetryReader(tmp_path)
    await writer.emit("before")
    # What a writer killed in the middle of its write leaves behind: a line without its newline.
    async with await anyio.open_file(tmp_path / "events.jsonl", "ab") as live:
        await live.write(b'{"id":"half-writ')
    events, checkpoint = await reader.read(Checkpoint())
    assert [event.type for event in events] == ["before"]
    assert (await reader.read(checkpoint))[0] == []
    await writer.emit("after")
    events, _ = await reader.read(checkpoint)
    assert [event.type for event in events] == ["after"]
    assert reader.skipped_lines == 1


@pytest.mark.anyio
async def test_a_fragment_at_rotation_is_terminated_in_the_rotated_file(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="aidb")
    await writer.emit("before")
    async with await anyio.open_file(tmp_path / "events.jsonl", "ab") as live:
        await live.write(b"x" * 900)
    await writer.emit("after")
    assert await rotated_seqs(tmp_path) == [1]
    (rotated,) = [path async for path in anyio.Path(tmp_path).glob("events-*.jsonl")]
    assert (await rotated.read_bytes()).endswith(b"x\n")
    reader = TelemetryReader(tmp_path)
    events, _ = await read_all(reader, Checkpoint())
    assert [event.type for event in events] == ["before", "after"]
    assert reader.skipped_lines == 1


@pytest.mark.anyio
async def test_removing_consumed_files_keeps_the_numbering_going(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="aidb")
    reader = TelemetryReader(tmp_path)
    for index in range(40):
        await writer.emit("tick", index=index)
    events, checkpoint = await read_all(reader, Checkpoint())
    before = await rotated_seqs(tmp_path)
    assert await reader.remove_consumed(checkpoint) == len(before)
    assert await rotated_seqs(tmp_path) == []
    for index in range(40, 80):
        await writer.emit("tick", index=index)
    assert (await rotated_seqs(tmp_path))[0] == before[-1] + 1
    more, _ = await read_all(reader, checkpoint)
    assert [event.data["index"] for event in events + more] == list(range(80))


@pytest.mark.anyio
async def test_backlog_counts_the_bytes_not_yet_read_across_files(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024, source="aidb")
    reader = TelemetryReader(tmp_path)
    assert await reader.backlog_bytes(Checkpoint()) == 0
    for index in range(30):
        await writer.emit("tick", index=index)
    # All events as one byte stream: rotated files in seq order, then the live file.
    stream = b""
    for seq in await rotated_seqs(tmp_path):
        (path,) = [path async for path in anyio.Path(tmp_path).glob(f"events-*-{seq:08d}.jsonl")]
        stream += await path.read_bytes()
    stream += await anyio.Path(tmp_path / "events.jsonl").read_bytes()
    assert await reader.backlog_bytes(Checkpoint()) == len(stream)
    _, checkpoint = await reader.read(Checkpoint(), max_events=10)
    consumed = len(b"".join(stream.splitlines(keepends=True)[:10]))
    assert await reader.backlog_bytes(checkpoint) == len(stream) - consumed
    _, end = await read_all(reader, checkpoint)
    assert await reader.backlog_bytes(end) == 0


@pytest.mark.anyio
async def test_checkpoint_ahead_of_the_files_restarts_from_the_beginning(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path, 1024 * 1024, source="aidb")
    await writer.emit("only")
    events, _ = await TelemetryReader(tmp_path).read(Checkpoint(seq=99, offset=10))
    assert [event.type for event in events] == ["only"]


@pytest.mark.anyio
async def test_unwritable_directory_raises_dependency_unavailable(tmp_path: Path) -> None:
    await anyio.Path(tmp_path / "a-file").write_text("", encoding="utf-8")
    writer = TelemetryWriter(tmp_path / "a-file" / "telemetry", 1024, source="aidb")
    with pytest.raises(DependencyUnavailable) as caught:
        await writer.emit("lost")
    assert caught.value.dependency == "telemetry"
