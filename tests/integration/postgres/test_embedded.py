"""The embedded server end to end: unprivileged as root, restarts on its cluster, shared by handles and processes."""

import os
import signal
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio import to_thread
from anyio.abc import Process

from mcp_servers.shared.postgres import EmbeddedPostgres, embedded_postgres
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WAIT_SECONDS = 60

HOLDER_SCRIPT = """
import sys, anyio
from pathlib import Path
from mcp_servers.shared.postgres import embedded_postgres

async def main():
    async with embedded_postgres(Path(sys.argv[1])) as dsn:
        print(dsn, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # hold the server until the test closes stdin

anyio.run(main)
"""


def _owner_uid(path: Path) -> int:
    return path.stat().st_uid


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its /proc status says so.
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def _query(dsn: str, sql: str) -> object:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def _server_uid(pgdata: Path) -> int:
    pid = await to_thread.run_sync(_postmaster_pid, pgdata)
    return await to_thread.run_sync(_owner_uid, Path(f"/proc/{pid}"))


async def _start_holder(data_dir: Path) -> tuple[Process, str]:
    process = await anyio.open_process([sys.executable, "-c", HOLDER_SCRIPT, str(data_dir)])
    assert process.stdout is not None
    line = b""
    with anyio.fail_after(WAIT_SECONDS):
        while not line.endswith(b"\n"):
            line += await process.stdout.receive(1)
    return process, line.decode().strip()


async def _release_holder(process: Process) -> None:
    assert process.stdin is not None
    await process.stdin.aclose()
    with anyio.fail_after(WAIT_SECONDS):
        assert await process.wait() == 0
    await process.aclose()


async def test_embedded_server_runs_unprivileged_and_restarts_on_the_same_cluster(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir / "data")

    dsn = await server.start()
    assert "5432" not in dsn
    assert await _query(dsn, "SELECT current_setting('server_version_num')::int / 10000") == 18
    assert await _query(dsn, "SELECT current_setting('listen_addresses')") == ""
    if os.getuid() == 0:
        assert await _server_uid(server.pgdata) != 0
        assert await to_thread.run_sync(_owner_uid, server.pgdata) != 0
    await _query(dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
    await server.stop()

    assert not await server.is_running()
    with pytest.raises(OSError):
        await _query(dsn, "SELECT 1")

    restarted = await server.start()
    try:
        assert restarted == dsn
        assert await _query(restarted, "SELECT answer FROM kept") == 42
    finally:
        await server.stop()


async def test_context_manager_stops_the_server_it_started(data_dir: Path) -> None:
    async with embedded_postgres(data_dir) as dsn:
        assert await _query(dsn, "SELECT 1") == 1

    assert not await EmbeddedPostgres(data_dir).is_running()


async def test_two_handles_share_one_server_until_the_last_stops(data_dir: Path) -> None:
    first, second = EmbeddedPostgres(data_dir), EmbeddedPostgres(data_dir)
    dsns: list[str] = []

    async def start(server: EmbeddedPostgres) -> None:
        dsns.append(await server.start())

    async with anyio.create_task_group() as group:
        group.start_soon(start, first)
        group.start_soon(start, second)
    assert dsns[0] == dsns[1]

    await first.stop()
    assert await _query(dsns[1], "SELECT 1") == 1
    await second.stop()
    assert not await second.is_running()


async def test_two_processes_starting_together_share_one_server(data_dir: Path) -> None:
    (first, first_dsn), (second, second_dsn) = await _start_both(data_dir)
    try:
        assert first_dsn == second_dsn
        assert await _query(first_dsn, "SELECT 1") == 1
        await _release_holder(first)
        assert await _query(second_dsn, "SELECT 1") == 1
        await _release_holder(second)
    finally:
        for process in (first, second):
            if process.returncode is None:
                process.kill()
                await process.aclose()

    assert not await EmbeddedPostgres(data_dir).is_running()


async def _start_both(data_dir: Path) -> list[tuple[Process, str]]:
    holders: list[tuple[Process, str]] = []

    async def start() -> None:
        holders.append(await _start_holder(data_dir))

    async with anyio.create_task_group() as group:
        group.start_soon(start)
        group.start_soon(start)
    return holders


async def test_server_left_by_a_killed_holder_is_joined_and_stopped_by_the_next(data_dir: Path) -> None:
    process, dsn = await _start_holder(data_dir)
    postmaster = await to_thread.run_sync(_postmaster_pid, EmbeddedPostgres(data_dir).pgdata)
    process.kill()
    await process.wait()
    await process.aclose()
    assert await _query(dsn, "SELECT 1") == 1

    server = EmbeddedPostgres(data_dir)
    assert await server.start() == dsn
    assert await to_thread.run_sync(_postmaster_pid, server.pgdata) == postmaster
    await server.stop()

    assert not await server.is_running()


async def test_server_starts_again_after_its_postmaster_was_killed(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    dsn = await server.start()
    await _query(dsn, "CREATE TABLE kept AS SELECT 7 AS answer")
    postmaster = await to_thread.run_sync(_postmaster_pid, server.pgdata)
    os.kill(postmaster, signal.SIGKILL)

    async def gone() -> bool:
        return await to_thread.run_sync(_process_gone, postmaster)

    await wait_until(gone, timeout=WAIT_SECONDS, interval=0.02)
    await server.stop()  # forgets this handle; the stale pid file must not confuse the next start

    again = EmbeddedPostgres(data_dir)
    try:
        assert await _query(await again.start(), "SELECT answer FROM kept") == 7
    finally:
        await again.stop()
