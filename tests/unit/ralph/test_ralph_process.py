"""Running commands: process groups, timeouts, cancellation, scrubbed environment, capped output."""

import os
import sys

import anyio
import pytest

from mcp_servers.ralph.process import run_process, scrubbed_env, split_command

pytestmark = pytest.mark.anyio


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_output_exit_status_and_stdin_are_captured() -> None:
    code = "import sys; data = sys.stdin.read(); print('got', data); print('err', file=sys.stderr); sys.exit(4)"
    result = await run_process(
        [sys.executable, "-c", code],
        cwd=None,
        env=scrubbed_env([], {}),
        stdin=b"hello",
        timeout_seconds=30,
        max_output_bytes=4096,
    )
    assert (result.exit_status, result.timed_out, result.ok) == (4, False, False)
    assert "got hello" in result.output and "err" in result.output


async def test_timeout_kills_the_whole_process_group(tmp_path: anyio.Path) -> None:
    pid_file = f"{tmp_path}/child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({pid_file!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    result = await run_process(
        [sys.executable, "-c", code], cwd=None, env=scrubbed_env([], {}), timeout_seconds=2, max_output_bytes=1024
    )
    child = int(await anyio.Path(pid_file).read_text())
    assert result.timed_out and result.exit_status is None
    with anyio.fail_after(5):
        while _alive(child):
            await anyio.sleep(0.02)


async def test_cancellation_kills_the_command_before_propagating() -> None:
    started: list[int] = []

    async def on_start(pgid: int) -> None:
        started.append(pgid)

    with anyio.move_on_after(1):
        await run_process(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            cwd=None,
            env=scrubbed_env([], {}),
            timeout_seconds=600,
            max_output_bytes=1024,
            on_start=on_start,
        )
    assert started and not _alive(started[0])


async def test_a_program_that_cannot_start_is_a_failed_result() -> None:
    result = await run_process(
        ["/no/such/program"], cwd=None, env=scrubbed_env([], {}), timeout_seconds=5, max_output_bytes=1024
    )
    assert result.exit_status is None and not result.ok and "cannot start" in result.output


async def test_long_output_keeps_head_and_tail() -> None:
    code = "print('HEAD'); print('x' * 100000); print('TAIL')"
    result = await run_process(
        [sys.executable, "-c", code], cwd=None, env=scrubbed_env([], {}), timeout_seconds=30, max_output_bytes=2048
    )
    assert result.truncated and result.output.startswith("HEAD") and result.output.rstrip().endswith("TAIL")
    assert len(result.output) < 2200


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_STACK_POSTGRES__DSN", "postgresql://secret")
    monkeypatch.setenv("SOME_API_KEY", "secret")
    monkeypatch.setenv("ALLOWED_KEY", "yes")
    env = scrubbed_env(["ALLOWED_KEY", "MCP_STACK_POSTGRES__DSN"], {"RALPH_TASK_ID": "t"})
    assert "SOME_API_KEY" not in env and "MCP_STACK_POSTGRES__DSN" not in env
    assert env["ALLOWED_KEY"] == "yes" and env["RALPH_TASK_ID"] == "t" and "PATH" in env


def test_commands_split_like_a_shell_without_one() -> None:
    assert split_command("pytest -q 'tests/a b.py'") == ["pytest", "-q", "tests/a b.py"]
    with pytest.raises(ValueError):
        split_command("   ")
    with pytest.raises(ValueError):
        split_command("echo 'unbalanced")
