"""The `command` backend: a CLI agent (`claude -p`, `aider --message`, `codex exec`, ...) from a configured template.

Each iteration runs the template's argv in the task's workspace as its own process group, inside the sandbox
(network and extra read-only paths as the template says), with a scrubbed environment, the prompt substituted for
`{prompt}` and also sent on stdin, a timeout and captured output.
"""

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mcp_servers.ralph.backends.agent_output import read_agent_output
from mcp_servers.ralph.backends.port import IterationOutcome, IterationRequest
from mcp_servers.ralph.process import run_process, scrubbed_env
from mcp_servers.ralph.sandbox import SANDBOX_HOME, Confinement, Sandbox
from mcp_servers.shared.config import CommandTemplate, RalphSettings

DEFAULT_TEMPLATE = "default"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def template_name(backend: str) -> str | None:
    """`command` -> "default", `command:NAME` -> NAME, anything else -> None."""
    if backend == "command":
        return DEFAULT_TEMPLATE
    if backend.startswith("command:") and len(backend) > len("command:"):
        return backend.removeprefix("command:")
    return None


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Substitute `{name}` placeholders inside each argument in one pass (braces inside values stay literal)."""

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return [_PLACEHOLDER.sub(value, arg) for arg in template]


def task_env(settings: RalphSettings, request: IterationRequest, extra: Sequence[str] = ()) -> dict[str, str]:
    """The scrubbed environment of an agent command, naming the task, iteration and workspace; `extra` names
    variables this command may also see (its template's API keys)."""
    return scrubbed_env(
        [*settings.env_passthrough, *extra],
        {
            "RALPH_TASK_ID": str(request.task.id),
            "RALPH_ITERATION": str(request.number),
            "RALPH_WORKSPACE": str(request.workspace),
        },
    )


class CommandBackend:
    """Runs one configured argv template per iteration. Owns no long-lived resources."""

    def __init__(self, name: str, template: CommandTemplate, settings: RalphSettings, sandbox: Sandbox) -> None:
        self.name = name
        self._template = tuple(template.argv)
        self._network = template.network
        self._ro_binds = tuple(template.ro_binds)
        # Read from the server user's home; seen at the same place under the sandbox's home (where HOME points).
        home = Path.home()
        self._home_binds = tuple((home / path, Path(SANDBOX_HOME) / path) for path in template.home_binds)
        self._env = tuple(template.env_passthrough)
        self._output = template.output
        self.reports_cost = template.reports_cost
        self._settings = settings
        self._sandbox = sandbox

    async def run(self, request: IterationRequest) -> IterationOutcome:
        """Run the agent once; a non-zero exit, a timeout or a missing program is a failed iteration."""
        prompt = request.prompt
        argv = render(
            self._template,
            {
                "prompt": prompt,
                "task_id": str(request.task.id),
                "iteration": str(request.number),
                "workspace": str(request.workspace),
            },
        )
        confinement = Confinement(
            request.workspace, network=self._network, ro_binds=self._ro_binds, moved_binds=self._home_binds
        )
        command, env = self._sandbox.command(argv, task_env(self._settings, request, self._env), confinement)
        result = await run_process(
            command,
            cwd=request.workspace,
            env=env,
            stdin=prompt.encode("utf-8"),
            timeout_seconds=request.timeout_seconds,
            max_output_bytes=self._settings.max_output_bytes,
            kill_grace_seconds=self._settings.kill_grace_seconds,
            on_start=request.on_process_start,
        )
        report = read_agent_output(self._output, result.output)
        error = report.error
        if result.timed_out:
            error = f"timed out after {request.timeout_seconds:g} s"
        elif result.exit_status != 0:
            error = f"exited with status {result.exit_status}"
        return IterationOutcome(
            output=report.output,
            succeeded=result.ok and report.error is None,
            timed_out=result.timed_out,
            exit_status=result.exit_status,
            input_summary=f"{argv[0]} ({len(argv) - 1} args), prompt {len(prompt)} chars on stdin",
            cost_usd=report.cost_usd,
            tokens=report.tokens,
            error=error,
        )
