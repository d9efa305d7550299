"""The telemetry learning pipeline: exactly once across duplicates, crashes (SIGKILL) and concurrent rotated writers;
backpressure on and off."""

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from mcp_servers.hybrid.dataset import export_training_data
from mcp_servers.hybrid.pipeline import LearningPipeline
from mcp_servers.hybrid.proposals import find_proposals
from mcp_servers.shared.config import HybridSettings, StackSettings
from mcp_servers.shared.postgres.pool import Database, open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry
from mcp_servers.shared.telemetry import BACKPRESSURE_SIGNAL, LIVE_FILE, TelemetryWriter

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def database(stack_settings: StackSettings) -> AsyncIterator[Database]:
    async with open_database(stack_settings, BreakerRegistry(stack_settings.breaker)) as db:
        yield db


def pipeline_for(database: Database, directory: Path, **hybrid: object) -> LearningPipeline:
    return LearningPipeline(database, directory, HybridSettings(**hybrid))


async def emit_interactions(writer: TelemetryWriter, count: int, *, prefix: str = "q") -> None:
    for n in range(count):
        await writer.emit(
            "interaction", query=f"{prefix} question {n}", response=f"answer {n}", outcome="success", agent_type="local"
        )


async def counts(database: Database) -> tuple[int, int, int]:
    row = await database.fetchrow(
        """SELECT (SELECT count(*) FROM hybrid_processed_events) AS events,
                  (SELECT count(*) FROM hybrid_interactions) AS interactions,
                  (SELECT count(*) FROM hybrid_training_examples) AS examples"""
    )
    assert row is not None
    return row["events"], row["interactions"], row["examples"]


async def test_events_are_applied_once_and_duplicates_skipped(database: Database, tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph")
    await emit_interactions(writer, 25)
    await writer.emit("tool_call", tool="search", outcome="ok", duration_seconds=0.5)
    await writer.emit("interaction", query="secret", response="AKIAIOSFODNN7EXAMPLE", outcome="success")
    # A line delivered twice (e.g. replayed by a producer) carries the same event id.
    live = anyio.Path(directory / LIVE_FILE)
    lines = (await live.read_text(encoding="utf-8")).splitlines()
    async with await anyio.open_file(directory / LIVE_FILE, "a", encoding="utf-8") as handle:
        await handle.write(lines[3] + "\n")

    pipeline = pipeline_for(database, directory, checkpoint_every_events=10)
    assert await pipeline.drain() == 28
    assert await counts(database) == (27, 26, 25)  # the secret interaction is stored but never a training example
    assert pipeline.state.duplicates_skipped == 1
    assert pipeline.state.checkpoints_written == 3
    stats = await database.fetchrow("SELECT calls, duration_sum FROM hybrid_tool_stats WHERE tool = 'search'")
    assert stats is not None and stats["calls"] == 1

    # A restarted pipeline resumes from the committed checkpoint and applies nothing again.
    again = pipeline_for(database, directory, checkpoint_every_events=10)
    assert await again.drain() == 0
    await emit_interactions(writer, 3, prefix="later")
    assert await again.drain() == 3
    assert await counts(database) == (30, 29, 28)


async def test_backpressure_sheds_low_value_work_and_signals_producers(database: Database, tmp_path: Path) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="aidb")
    for _ in range(40):
        await writer.emit("tool_call", tool="search", outcome="ok", duration_seconds=0.1, pad="x" * 50)
    await emit_interactions(writer, 5)
    pipeline = pipeline_for(database, directory, backpressure_bytes=2048, checkpoint_every_events=10)
    await pipeline.load()
    assert await pipeline.refresh_backpressure()
    signal_body = json.loads(await anyio.Path(pipeline.signal_path).read_text(encoding="utf-8"))
    assert signal_body["active"] and signal_body["backlog_bytes"] > 2048
    await pipeline.drain()
    assert not pipeline.state.backpressure and not await anyio.Path(pipeline.signal_path).exists()
    assert pipeline.state.shed_events > 0  # counted, not silently lost
    assert (await counts(database))[2] == 5  # interactions are never shed
    assert pipeline.state.lag_bytes == 0


async def test_producers_see_the_signal_while_the_backlog_is_above_the_threshold(
    database: Database, tmp_path: Path
) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph", signal_check_seconds=0)
    await emit_interactions(writer, 30)
    pipeline = pipeline_for(database, directory, backpressure_bytes=2048, checkpoint_every_events=10)
    await pipeline.load()
    assert await pipeline.refresh_backpressure()
    assert await writer.check_backpressure()
    await pipeline.drain()
    assert not await writer.check_backpressure()
    assert writer.backpressure_episodes == 1


async def test_a_signal_left_by_a_killed_run_is_removed_when_the_backlog_is_small(
    database: Database, tmp_path: Path
) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph")
    await emit_interactions(writer, 3)
    await anyio.Path(directory / BACKPRESSURE_SIGNAL).write_text('{"active": true}\n', encoding="utf-8")
    pipeline = pipeline_for(database, directory, backpressure_bytes=1024 * 1024)
    assert not await pipeline.refresh_backpressure()
    assert not await anyio.Path(pipeline.signal_path).exists()


WORKER = """
import sys
from pathlib import Path
import anyio
from mcp_servers.hybrid.pipeline import LearningPipeline
from mcp_servers.hybrid.proposals import find_proposals
from mcp_servers.shared.config import load_settings
from mcp_servers.shared.postgres.pool import open_database
from mcp_servers.shared.resilience.breaker import BreakerRegistry

async def main(dsn, directory):
    settings = load_settings(postgres={"dsn": dsn}, hybrid={"checkpoint_every_events": 10})
    async with open_database(settings, BreakerRegistry(settings.breaker)) as database:
        pipeline = LearningPipeline(database, Path(directory), settings.hybrid)
        print("ready", flush=True)
        await pipeline.drain()

anyio.run(main, sys.argv[1], sys.argv[2])
"""


async def start_worker(dsn: str, directory: Path) -> Process:
    process = await anyio.open_process(
        [sys.executable, "-c", WORKER, dsn, str(directory)], stdout=subprocess.PIPE, stderr=None
    )
    assert process.stdout is not None
    with anyio.fail_after(60):
        assert await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100) == b"ready"
    return process


async def test_sigkill_mid_batch_loses_nothing_and_repeats_nothing(
    stack_settings: StackSettings, database: Database, tmp_path: Path
) -> None:
    total = 3000
    directory = tmp_path / "telemetry"
    await emit_interactions(TelemetryWriter(directory, 256 * 1024, source="ralph"), total)
    assert stack_settings.postgres.dsn is not None
    dsn = stack_settings.postgres.dsn.get_secret_value()

    worker = await start_worker(dsn, directory)
    with anyio.fail_after(120):
        while (await counts(database))[0] < 200:
            await anyio.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    killed_at = (await counts(database))[0]
    assert 0 < killed_at < total

    restarted = await start_worker(dsn, directory)
    with anyio.fail_after(180):
        assert await restarted.wait() == 0
    assert await counts(database) == (total, total, total)
    row = await database.fetchrow("SELECT events_processed FROM hybrid_pipeline_checkpoints")
    assert row is not None and row["events_processed"] == total

    exported = await export_training_data(database, tmp_path / "datasets", "openai")
    lines = (await anyio.Path(exported.path).read_text(encoding="utf-8")).splitlines()
    assert len(lines) == total == len(set(lines))


WRITER = """
import sys
from pathlib import Path
import anyio
from mcp_servers.shared.telemetry import TelemetryWriter

async def main(directory, worker, count):
    writer = TelemetryWriter(Path(directory), 32 * 1024, source=f"w{worker}")
    for n in range(count):
        await writer.emit("interaction", query=f"w{worker} q{n}", response="a" * (n % 200), outcome="success")

print("ready", flush=True)
sys.stdin.readline()
anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


async def test_eight_writers_with_rotation_every_event_exactly_once(database: Database, tmp_path: Path) -> None:
    processes_count, per_process = 8, 1000
    directory = tmp_path / "telemetry"
    writers = []
    for worker in range(processes_count):
        process = await anyio.open_process(
            [sys.executable, "-c", WRITER, str(directory), str(worker), str(per_process)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
        )
        assert process.stdout is not None
        with anyio.fail_after(30):
            assert await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100) == b"ready"
        writers.append(process)
    pipeline = pipeline_for(database, directory, checkpoint_every_events=100)
    for process in writers:
        assert process.stdin is not None
        await process.stdin.send(b"go\n")
    with anyio.fail_after(240):
        while any(process.returncode is None for process in writers):
            await pipeline.run_once()  # consume while writers rotate underneath
            await anyio.lowlevel.checkpoint()
        for process in writers:
            assert await process.wait() == 0
        await pipeline.drain()
    assert await counts(database) == (8000, 8000, 8000)
    assert pipeline.state.duplicates_skipped == 0 and pipeline.reader.skipped_lines == 0
    rotations = int((await anyio.Path(directory / "events.seq").read_text(encoding="utf-8")).strip())
    assert rotations > 10
    # Every rotated file is behind the committed checkpoint by now, so the pipeline has deleted them all.
    assert [path async for path in anyio.Path(directory).glob("events-*.jsonl")] == []
    assert pipeline.state.files_removed == rotations


async def test_ralph_tasks_hitting_their_limit_become_an_iteration_limit_proposal(
    database: Database, tmp_path: Path
) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph")
    for n in range(25):
        reason = "max_iterations" if n % 2 else "promise_found"
        await writer.emit("ralph.task_finished", backend="hybrid", completion_reason=reason, iterations_done=10)
    await pipeline_for(database, directory).drain()
    [proposal] = await find_proposals(database)
    assert (proposal.kind, proposal.subject) == ("ralph_iteration_limit", "ralph/task:hybrid")
    assert "12 of 25" in proposal.description


async def test_an_event_postgresql_cannot_store_is_left_out_and_learning_goes_on(
    database: Database, tmp_path: Path
) -> None:
    directory = tmp_path / "telemetry"
    writer = TelemetryWriter(directory, 1024 * 1024, source="ralph")
    await emit_interactions(writer, 2, prefix="before")
    # Each of these once failed its whole batch on every replay, so the pipeline never moved past it.
    await writer.emit("interaction", query="tokens past int32", response="a", outcome="success", tokens_used=2**40)
    await writer.emit("interaction", query="a NUL \x00 inside", response="a", outcome="failure")
    await writer.emit("tool_call", tool="search\ud800", outcome="ok", duration_seconds=0.5)
    await emit_interactions(writer, 2, prefix="after")

    pipeline = pipeline_for(database, directory, checkpoint_every_events=100)
    with anyio.fail_after(30):
        assert await pipeline.drain() == 7
    # 7 events claimed; the 4 good interactions and their examples stored; the unstorable interactions, the
    # example of the successful one and the tool statistics left out.
    assert await counts(database) == (7, 4, 4)
    assert await database.fetchval("SELECT count(*) FROM hybrid_tool_stats") == 0
    await emit_interactions(writer, 1, prefix="later")
    assert await pipeline.drain() == 1
    assert await counts(database) == (8, 5, 5)
