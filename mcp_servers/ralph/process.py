"""Run one command the way Ralph runs every command: own process group, scrubbed env, timeout, captured output.

The command starts in a new session (its pid is its process-group id), so a timeout, a cancellation (stop_task)
or the end of the command kills the whole group: SIGTERM, a short grace, then SIGKILL. Nothing a command starts
outlives its iteration.
"""

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process

logger = logging.getLogger(__name__)

# What every child gets from our environment; nothing else leaks (keys, DSNs, MCP_STACK_* settings).
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "USER", "LOGNAME", "TZ")
# Output after the leader exits may still sit in the pipe; wait this long for it before killing stragglers.
_DRAIN_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a command ended. `exit_status` is None when we killed it (timeout or cancellation) or it never ran."""

    exit_status: int | None
    output: str
    timed_out: bool
    duration_seconds: float
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out


def scrubbed_env(passthrough: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment: base keys and allowed names from ours, plus `extra`; never MCP_STACK_*."""
    env = {key: os.environ[key] for key in (*BASE_ENV_KEYS, *passthrough) if key in os.environ}
    env = {key: value for key, value in env.items() if not key.startswith("MCP_STACK_")}
    env.setdefault("PATH", os.defpath)
    env.update(extra)
    return env


def split_command(command: str) -> list[str]:
    """Shell-like splitting without a shell; raises ValueError on unbalanced quotes or an empty command."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("empty command")
    return argv


def find_program(program: str, cwd: Path | None, path: str | None = None) -> str | None:
    """Resolve a program like exec would (PATH, or relative to cwd when it has a slash); None if missing.

    Blocking (stat calls): run it in a worker thread.
    """
    if "/" in program:
        candidate = Path(program) if cwd is None else cwd / program
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which(program, path=path if path is not None else os.environ.get("PATH", os.defpath))


class _Capture:
    """Keeps the head and the tail of a stream within a byte budget (a promise usually ends the output)."""

    def __init__(self, limit: int) -> None:
        self._head_limit = limit // 4
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_limit:
                del self._tail[: len(self._tail) - self._tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + len(self._tail)

    def text(self) -> str:
        if not self.truncated:
            return (self._head + self._tail).decode("utf-8", errors="replace")
        omitted = self.total - len(self._head) - len(self._tail)
        return (
            self._head.decode("utf-8", errors="replace")
            + f"\n[... {omitted} bytes omitted ...]\n"
            + self._tail.decode("utf-8", errors="replace")
        )


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send a signal to a process group; False once the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id now belongs to someone else: it is not ours to kill
        return False
    return True


async def kill_group(process: Process, grace_seconds: float) -> None:
    """Terminate the command's whole process group: SIGTERM, wait up to `grace_seconds`, then SIGKILL."""
    pgid = process.pid
    if process.returncode is None and _signal_group(pgid, signal.SIGTERM):
        with anyio.move_on_after(grace_seconds):
            await process.wait()
    # Stragglers (children that ignored SIGTERM or outlived the leader) get SIGKILL either way.
    _signal_group(pgid, signal.SIGKILL)
    await process.wait()


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    stdin: bytes | None = None,
    timeout_seconds: float,
    max_output_bytes: int,
    kill_grace_seconds: float = 0.5,
    on_start: Callable[[int], Awaitable[None]] | None = None,
) -> ProcessResult:
    """Run argv to completion or timeout, capturing stdout and stderr together.

    Cancellation kills the process group before it propagates. A program that cannot start gives exit status
    None and the reason as output (it is the command's failure, not ours).

    Args:
        on_start: awaited with the process-group id once the command runs (e.g. to record it durably).
    """
    started = time.perf_counter()
    try:
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        return ProcessResult(None, f"cannot start {argv[0]}: {exc.strerror}", False, 0.0, False)
    capture = _Capture(max_output_bytes)
    timed_out = False
    try:
        if on_start is not None:
            await on_start(process.pid)
        with anyio.move_on_after(timeout_seconds) as deadline:
            async with anyio.create_task_group() as tg:
                reader_done = anyio.Event()

                async def read_output() -> None:
                    assert process.stdout is not None
                    with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                        async for chunk in process.stdout:
                            capture.feed(chunk)
                    reader_done.set()

                async def feed_stdin() -> None:
                    if process.stdin is None or stdin is None:
                        return
                    # A command that never reads stdin closes the pipe: that is its business.
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        await process.stdin.send(stdin)
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        await process.stdin.aclose()

                tg.start_soon(read_output)
                tg.start_soon(feed_stdin)
                await process.wait()
                # Children that inherited stdout may keep the pipe open after the leader exits.
                with anyio.move_on_after(_DRAIN_SECONDS):
                    await reader_done.wait()
                tg.cancel_scope.cancel()
        timed_out = deadline.cancelled_caught
    finally:
        with anyio.CancelScope(shield=True):
            await kill_group(process, kill_grace_seconds)
            if process.stdout is not None:
                await process.stdout.aclose()
    exit_status = None if timed_out else process.returncode
    return ProcessResult(exit_status, capture.text(), timed_out, time.perf_counter() - started, capture.truncated)


def _kill_orphan_group(pgid: int, env_marker: str) -> bool:
    try:
        environ = Path(f"/proc/{pgid}/environ").read_bytes()
    except OSError:  # gone, not Linux, or not ours to read
        return False
    # The pid may have been reused by an unrelated process: only kill a group that carries our marker.
    if env_marker.encode("utf-8") not in environ.split(b"\0"):
        return False
    return _signal_group(pgid, signal.SIGKILL)


async def kill_orphan_group(pgid: int, env_marker: str) -> bool:
    """SIGKILL a process group a dead worker left behind on this host, if its leader's environment contains
    `env_marker` (e.g. `RALPH_TASK_ID=<id>`); True if signalled."""
    return await anyio.to_thread.run_sync(_kill_orphan_group, pgid, env_marker)
