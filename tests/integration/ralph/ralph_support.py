"""Ralph test helpers: settings with small real agent programs as command templates, task polling."""

import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import rich.console  # noqa: F401  # MCPServer imports rich lazily; that import calls os.getcwd (BlockBuster)
from mcp import Client

from mcp_servers.shared.config import StackSettings, load_settings

TERMINAL = {"completed", "limit_reached", "stuck", "failed", "stopped", "rejected"}

# Scripts the tests use as agents; each runs in the task's workspace.
PROGRAMS = {
    # Edits a file and prints the promise on its third run.
    "third_time": """
        import pathlib
        counter = pathlib.Path("count.txt")
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        print(f"run {n}: edited count.txt")
        if n >= 3:
            print("<promise>DONE</promise>")
    """,
    # Makes progress (different output) but never finishes.
    "never_done": """
        import os
        print(f"iteration {os.environ['RALPH_ITERATION']}: still working")
    """,
    # Always says the same thing.
    "repeats": """
        print("I am thinking about it")
    """,
    # Always fails.
    "fails": """
        import os, sys
        print(f"failure {os.environ['RALPH_ITERATION']}")
        sys.exit(3)
    """,
    # Runs for a long time (and starts a child that would outlive a naive kill).
    "sleeper": """
        import os, pathlib, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pathlib.Path("pids.txt").write_text(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    """,
    # Writes a file on its second run; the verify command checks for it.
    "writes_on_second": """
        import os, pathlib
        if os.environ["RALPH_ITERATION"] == "2":
            pathlib.Path("result.txt").write_text("ok")
        print(f"iteration {os.environ['RALPH_ITERATION']}")
    """,
    # Appends its iteration number to a log, sleeps a while, prints the promise on the 4th run.
    "slow_logger": """
        import os, pathlib, time
        n = os.environ["RALPH_ITERATION"]
        with open("iterations.log", "a", encoding="utf-8") as log:
            log.write(f"start {n}\\n")
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.6")))
        with open("iterations.log", "a", encoding="utf-8") as log:
            log.write(f"end {n}\\n")
        runs = pathlib.Path("iterations.log").read_text(encoding="utf-8").count("end ")
        print(f"iteration {n} done, {runs} finished runs")
        if runs >= 4:
            print("<promise>FINISHED</promise>")
    """,
    # Prints the promise at once.
    "instant": """
        print("<promise>OK</promise>")
    """,
    # A hook: appends the event, the iteration number and the task status it read on stdin to hooks.log.
    "hook_logger": """
        import json, sys
        payload = json.load(sys.stdin)
        number = (payload["iteration"] or {}).get("number")
        with open("hooks.log", "a", encoding="utf-8") as log:
            log.write(f"{payload['event']} {number} {payload['task']['status']} {payload['task']['id']}\\n")
    """,
    # A hook that always fails.
    "hook_fails": """
        import sys
        print("hook says no")
        sys.exit(1)
    """,
}


def program_command(directory: Path, name: str) -> str:
    """A command line (for verify_command or a hook) running one of PROGRAMS."""
    return f"{sys.executable} {directory / (name + '.py')}"


def write_programs(directory: Path) -> dict[str, list[str]]:
    """Write every program; return command templates (argv) running each with this Python."""
    directory.mkdir(parents=True, exist_ok=True)
    templates: dict[str, list[str]] = {}
    for name, source in PROGRAMS.items():
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        templates[name] = [sys.executable, str(path), "{prompt}"]
    templates["default"] = templates["third_time"]
    return templates


@pytest.fixture
def programs(tmp_path: Path) -> Path:
    """Where the PROGRAMS are written (by ralph_settings)."""
    return tmp_path / "programs"


@pytest.fixture
def workspace_root(tmp_path: Path) -> Path:
    root = tmp_path / "workspaces"
    root.mkdir()
    return root


@pytest.fixture
def ralph_settings(stack_settings: StackSettings, tmp_path: Path, workspace_root: Path) -> Callable[..., StackSettings]:
    """Build settings for a Ralph test: programs as templates, fast polling, no rate limit; overrides win."""
    templates = write_programs(tmp_path / "programs")

    def make(**ralph: Any) -> StackSettings:
        section = {
            "workers": 4,
            "lease_seconds": 5.0,
            "control_poll_seconds": 0.1,
            "workspace_roots": [str(workspace_root)],
            "command_templates": templates,
            "backoff_base_seconds": 0.0,
            "backoff_max_seconds": 0.0,
            **ralph,
        }
        return load_settings(
            data_dir=stack_settings.data_dir,
            postgres=stack_settings.postgres.model_dump(),
            rate_limit={"enabled": False},
            ralph=section,
        )

    return make


def make_workspace(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool and return its structured result; fail the test on a tool error."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def wait_for_status(
    client: Client, task_id: str, statuses: set[str] = TERMINAL, *, timeout: float = 30
) -> dict[str, Any]:
    """Poll task_status until the task is in one of `statuses`."""
    with anyio.fail_after(timeout):
        while True:
            task = await call(client, "task_status", task_id=task_id)
            if task["status"] in statuses:
                return task
            await anyio.sleep(0.05)


async def read_iterations(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The ralph://tasks/{id}/iterations resource, parsed."""
    result = await client.read_resource(f"ralph://tasks/{task_id}/iterations")
    text = result.contents[0].text  # type: ignore[union-attr]
    return list(json.loads(text)["iterations"])
