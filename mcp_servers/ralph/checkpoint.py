"""Optional git checkpoint: commit the task's workspace after each iteration, so every step can be inspected
or reverted. A workspace that is not yet a repository is initialised.

git runs in the sandbox like any agent command: the agent controls the workspace, hence `.git/config` and
`.git/hooks` (core.fsmonitor, post-commit), which git would otherwise run with the server's rights."""

import logging
from pathlib import Path

from mcp_servers.ralph.process import ProcessResult, run_process
from mcp_servers.ralph.sandbox import Confinement, Sandbox

logger = logging.getLogger(__name__)

_GIT_TIMEOUT_SECONDS = 60.0
# A fixed identity: the workspace may have none configured, and the commit is Ralph's, not the user's.
_IDENTITY = ["-c", "user.name=Ralph", "-c", "user.email=ralph@localhost", "-c", "commit.gpgsign=false"]


class CheckpointError(Exception):
    """Raised when git fails; the worker records it with the iteration and goes on."""


async def _git(workspace: Path, env: dict[str, str], sandbox: Sandbox, *args: str) -> ProcessResult:
    argv, confined_env = sandbox.command(["git", *_IDENTITY, *args], env, Confinement(workspace))
    return await run_process(
        argv,
        cwd=workspace,
        env=confined_env,
        timeout_seconds=_GIT_TIMEOUT_SECONDS,
        max_output_bytes=64 * 1024,
    )


async def commit_checkpoint(workspace: Path, env: dict[str, str], sandbox: Sandbox, message: str) -> str | None:
    """Commit everything under the workspace; returns the commit id, or None when nothing changed.

    Raises:
        CheckpointError: git is missing or refused (message names the failing step, not the output).
    """
    inside = await _git(workspace, env, sandbox, "rev-parse", "--is-inside-work-tree")
    if not inside.ok:
        missing = inside.exit_status is None and "cannot start" in inside.output
        if missing or "execvp git" in inside.output:  # unconfined, or bwrap's own report
            raise CheckpointError("git is not installed")
        init = await _git(workspace, env, sandbox, "init", "-q")
        if not init.ok:
            raise CheckpointError("git init failed")
    added = await _git(workspace, env, sandbox, "add", "-A", "--", ".")
    if not added.ok:
        raise CheckpointError("git add failed")
    status = await _git(workspace, env, sandbox, "status", "--porcelain", "--", ".")
    if not status.ok:
        raise CheckpointError("git status failed")
    if not status.output.strip():
        return None
    committed = await _git(workspace, env, sandbox, "commit", "-q", "--no-verify", "-m", message, "--", ".")
    if not committed.ok:
        raise CheckpointError("git commit failed")
    head = await _git(workspace, env, sandbox, "rev-parse", "HEAD")
    if not head.ok:
        raise CheckpointError("git rev-parse failed")
    return head.output.strip()
