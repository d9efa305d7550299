"""Ralph test helpers: settings with small real agent programs as command templates, task polling.

The programs run in Ralph's real sandbox (bubblewrap), which shows them only /usr, their workspace and what the
settings bind read-only: so they run on the interpreter's real binary (not the venv's symlink) with its prefix
and the programs directory bound.
"""

import json
import os
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
# The interpreter as a sandboxed command can start it: the real binary under its installation prefix.
PYTHON = os.path.realpath(sys.executable)
PYTHON_PREFIX = sys.base_prefix

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
    # Learns the expected answer only from the loop's feedback: the previous verify output in its prompt.
    "learns_from_verify": """
        import pathlib, re, sys
        found = re.search(r"answer.txt must contain (\\d+)", sys.argv[1])
        if found:
            pathlib.Path("answer.txt").write_text(found.group(1))
        print("wrote the answer" if found else "no idea what to write")
    """,
    # A verify command: passes when answer.txt holds 42, else says what is missing (like a failing test).
    "answer_check": """
        import pathlib, sys
        path = pathlib.Path("answer.txt")
        if path.exists() and path.read_text() == "42":
            print("1 passed")
            sys.exit(0)
        print("FAILED test_answer: answer.txt must contain 42")
        sys.exit(1)
    """,
    # Prints what `claude -p --output-format json` prints (a warning first, as on stderr), costing 0.4 USD a run.
    "claude_json": """
        import json, os
        n = int(os.environ["RALPH_ITERATION"])
        print("warning: something on stderr")
        print(json.dumps({
            "type": "result", "subtype": "success", "is_error": False, "duration_ms": 1200, "num_turns": 2,
            "result": f"changed file {n}", "session_id": "abc", "total_cost_usd": 0.4,
            "usage": {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 5},
        }))
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
    return f"{PYTHON} {directory / (name + '.py')}"


def write_programs(directory: Path) -> dict[str, list[str]]:
    """Write every program; return command templates (argv) running each with this Python."""
    directory.mkdir(parents=True, exist_ok=True)
    templates: dict[str, list[str]] = {}
    for name, source in PROGRAMS.items():
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        templates[name] = [PYTHON, str(path), "{prompt}"]
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
    """Build settings for a Ralph test: programs as templates, fast polling, no rate limit; overrides win.

    Caller-supplied commands are switched on (the in-process client is the trusted local parent); the sandbox
    stays the default one, with the interpreter's prefix and the programs readable.
    """
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
            "allow_task_commands": True,
            "sandbox_ro_binds": [PYTHON_PREFIX, str(tmp_path / "programs")],
            **ralph,
        }
        return load_settings(
            data_dir=stack_settings.data_dir,
            postgres=stack_settings.postgres.model_dump(),
            rate_limit={"enabled": False},
            ralph=section,
        )

    return make


def sleeper_pids(workspace: Path) -> tuple[int, int]:
    """Host pids of the `sleeper` program running in `workspace` and of its child.

    The pids it writes to pids.txt are its sandbox's own (a private pid namespace), so look for them from the
    host: processes whose environment names the workspace, told apart by their command line.
    """
    marker = f"RALPH_WORKSPACE={workspace}".encode()
    leader = child = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if argv[0] != PYTHON.encode():
            continue  # bwrap and its init carry the environment too
        if argv[1].endswith(b"sleeper.py"):
            leader = int(entry.name)
        elif any(b"time.sleep(600)" in arg for arg in argv):
            child = int(entry.name)
    assert leader is not None and child is not None, (leader, child)
    return leader, child


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
