"""TelemetryWriter follows the learning pipeline's backpressure signal file and still writes every event."""

import os
import time
from pathlib import Path

import anyio
import pytest

from mcp_servers.shared.telemetry import (
    BACKPRESSURE_SIGNAL,
    BACKPRESSURE_STALE_SECONDS,
    Checkpoint,
    TelemetryReader,
    TelemetryWriter,
)

pytestmark = pytest.mark.anyio


async def wait_for_backpressure(writer: TelemetryWriter, expected: bool) -> None:
    with anyio.fail_after(5):
        while await writer.check_backpressure() != expected:
            await anyio.sleep(0.01)


async def test_backpressure_follows_the_signal_file_within_the_check_interval(tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    directory.mkdir()
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph", signal_check_seconds=0.05)
    assert not await writer.check_backpressure() and not writer.backpressure

    await anyio.Path(directory / BACKPRESSURE_SIGNAL).write_text('{"active": true}\n', encoding="utf-8")
    await wait_for_backpressure(writer, True)
    assert writer.backpressure and writer.backpressure_episodes == 1

    await anyio.Path(directory / BACKPRESSURE_SIGNAL).unlink()
    await wait_for_backpressure(writer, False)
    assert not writer.backpressure and writer.backpressure_episodes == 1


async def test_the_signal_is_looked_at_no_more_than_once_per_interval(tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    directory.mkdir()
    signal = directory / BACKPRESSURE_SIGNAL
    await anyio.Path(signal).write_text("{}\n", encoding="utf-8")
    slow = TelemetryWriter(directory, 1024 * 1024, source="ralph", signal_check_seconds=3600)
    looks_every_time = TelemetryWriter(directory, 1024 * 1024, source="aidb", signal_check_seconds=0)
    # The first look happens at once, whatever the interval.
    assert await slow.check_backpressure() and await looks_every_time.check_backpressure()

    await anyio.Path(signal).unlink()
    await slow.emit("tick")
    # The signal is gone, as a writer that looks sees; within its interval neither a check nor an append of the
    # slow writer looks again, so it keeps the state of its last look.
    assert not await looks_every_time.check_backpressure()
    assert await slow.check_backpressure() and slow.backpressure
    assert slow.events_under_backpressure == 1


async def test_events_are_written_and_counted_while_backpressure_is_signalled(tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    directory.mkdir()
    await anyio.Path(directory / BACKPRESSURE_SIGNAL).write_text("{}\n", encoding="utf-8")
    writer = TelemetryWriter(directory, 1024 * 1024, source="aidb", signal_check_seconds=0)
    for n in range(3):
        await writer.emit("tool_call", n=n)
    # The append itself noticed the signal: no separate check was needed.
    assert writer.backpressure and writer.events_under_backpressure == 3
    events, _ = await TelemetryReader(directory).read(Checkpoint())
    assert [event.data["n"] for event in events] == [0, 1, 2]


def test_a_negative_check_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TelemetryWriter(tmp_path, 1024, source="ralph", signal_check_seconds=-1)


async def test_a_signal_left_by_a_dead_pipeline_goes_stale(tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    directory.mkdir()
    signal = directory / BACKPRESSURE_SIGNAL
    await anyio.Path(signal).write_text("{}\n", encoding="utf-8")
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph", signal_check_seconds=0)
    await wait_for_backpressure(writer, True)
    # A live pipeline rewrites the file on every refresh; one untouched for longer than the limit is ignored.
    old = time.time() - BACKPRESSURE_STALE_SECONDS - 5
    await anyio.to_thread.run_sync(os.utime, signal, (old, old))
    await wait_for_backpressure(writer, False)
