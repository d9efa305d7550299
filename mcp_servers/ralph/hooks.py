"""Task hooks: commands run before and after each iteration and when the task ends, fed the task as JSON on stdin.

A hook that fails (non-zero exit, timeout, missing program) is recorded with the iteration; a failing hook marked
`blocking` ends the task as `failed` with reason `hook_blocked`.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_servers.ralph.domain import Hook, HookEvent, HookResult, Task
from mcp_servers.ralph.process import run_process, split_command
from mcp_servers.ralph.sandbox import Confinement, Sandbox

_HOOK_OUTPUT_CHARS = 2000


def hook_payload(event: HookEvent, task: Task, iteration: dict[str, Any] | None) -> bytes:
    """The JSON document a hook reads on stdin."""
    return json.dumps({"event": event, "task": task.as_json(), "iteration": iteration}).encode("utf-8")


async def run_hooks(
    hooks: Sequence[Hook],
    event: HookEvent,
    *,
    task: Task,
    iteration: dict[str, Any] | None,
    workspace: Path,
    env: dict[str, str],
    sandbox: Sandbox,
    timeout_seconds: float,
    kill_grace_seconds: float,
) -> list[HookResult]:
    """Run the hooks registered for `event` in order; a blocking failure skips the hooks after it."""
    results: list[HookResult] = []
    payload = hook_payload(event, task, iteration)
    for hook in hooks:
        if hook.event != event:
            continue
        argv, hook_env = sandbox.command(
            split_command(hook.command), {**env, "RALPH_HOOK_EVENT": event}, Confinement(workspace)
        )
        result = await run_process(
            argv,
            cwd=workspace,
            env=hook_env,
            stdin=payload,
            timeout_seconds=timeout_seconds,
            max_output_bytes=_HOOK_OUTPUT_CHARS * 4,
            kill_grace_seconds=kill_grace_seconds,
        )
        results.append(
            HookResult(
                event=event,
                command=hook.command,
                exit_status=result.exit_status,
                ok=result.ok,
                blocking=hook.blocking,
                output=result.output[-_HOOK_OUTPUT_CHARS:],
            )
        )
        if hook.blocking and not result.ok:
            break
    return results


def blocking_failure(results: Sequence[HookResult]) -> HookResult | None:
    """The first failed blocking hook, if any."""
    return next((result for result in results if result.blocking and not result.ok), None)
