"""Completion conditions: the exact `<promise>TEXT</promise>` in an iteration's output, or a verify command."""

import re
from pathlib import Path

from mcp_servers.ralph.domain import VerifyRun
from mcp_servers.ralph.process import ProcessResult, run_process, split_command
from mcp_servers.ralph.sandbox import Confinement, Sandbox

_PROMISE = re.compile(r"<promise>(.*?)</promise>", re.DOTALL)
# Kept of a verify command's output per iteration (head and tail), and the tail of it fed to the next prompt.
VERIFY_OUTPUT_BYTES = 16 * 1024
FEEDBACK_CHARS = 8000


def promise_fulfilled(output: str, promise: str) -> bool:
    """True when the output contains `<promise>TEXT</promise>` whose TEXT equals the promise exactly.

    Only whitespace just inside the tags is ignored; a different, longer or partial text does not count.
    """
    expected = promise.strip()
    return any(match.strip() == expected for match in _PROMISE.findall(output))


async def verify_passes(
    command: str,
    *,
    workspace: Path,
    env: dict[str, str],
    sandbox: Sandbox,
    timeout_seconds: float,
    max_output_bytes: int,
    kill_grace_seconds: float,
) -> ProcessResult:
    """Run the verify command in the workspace (sandboxed); the task is complete when it exits 0."""
    argv, confined_env = sandbox.command(split_command(command), env, Confinement(workspace))
    return await run_process(
        argv,
        cwd=workspace,
        env=confined_env,
        timeout_seconds=timeout_seconds,
        max_output_bytes=max_output_bytes,
        kill_grace_seconds=kill_grace_seconds,
    )


def verify_feedback(command: str, run: VerifyRun) -> str | None:
    """What the next iteration's prompt says about a failed verify command (its output's tail); None if it passed."""
    if run.passed:
        return None
    status = "was stopped (timed out)" if run.exit_status is None else f"exited with status {run.exit_status}"
    output = run.output.strip()
    if len(output) > FEEDBACK_CHARS:
        output = "[...]\n" + output[-FEEDBACK_CHARS:]
    return (
        f"The verify command `{command}` ran after iteration {run.iteration} and {status}, so the task is not done "
        f"yet. Its output:\n```\n{output or '(no output)'}\n```"
    )
