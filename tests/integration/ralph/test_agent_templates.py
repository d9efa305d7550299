"""Agent CLIs on PATH become Ralph templates (`mcp-stack up`), and such a template runs end to end in the sandbox.

No agent CLI is installed here: executables named `claude`, `codex`, `aider` and `gemini` on a temporary PATH
stand in for them, checking the flags they are given and printing what the real CLI prints (shapes from its
documentation). That tests our detection, argv and output parsing, not the CLIs.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp import Client

from mcp_servers.ops.agents import agent_environment, detect_agent_templates
from mcp_servers.ralph.server import create_server
from mcp_servers.shared.config import StackSettings, env_variable, load_settings
from mcp_servers.shared.harness import build_core
from tests.integration.ralph.ralph_support import PYTHON, call, read_iterations, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# A stand-in `claude`: insists on print mode with JSON output, reads the prompt on stdin and its settings from
# ~/.claude, and answers like `claude -p --output-format json` (result, total_cost_usd, usage).
FAKE_CLAUDE = """#!{python}
import json, os, pathlib, sys
if sys.argv[1:] != ["-p", "--output-format", "json", "--dangerously-skip-permissions"]:
    print("unexpected arguments", sys.argv[1:])
    sys.exit(2)
prompt = sys.stdin.read()
settings = json.loads((pathlib.Path(os.environ["HOME"]) / ".claude" / "settings.json").read_text())
key = "yes" if os.environ.get("ANTHROPIC_API_KEY") == "sk-test" else "no"
print(json.dumps({{
    "type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "session_id": "s",
    "result": f"prompt={{prompt!r}} model={{settings['model']}} key={{key}} <promise>DONE</promise>",
    "total_cost_usd": 0.25, "usage": {{"input_tokens": 7, "output_tokens": 3}},
}}))
"""


def _fake_agents(root: Path) -> Path:
    bin_dir = root / "agents" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("claude", "codex", "aider", "gemini"):
        program = bin_dir / name
        program.write_text(FAKE_CLAUDE.format(python=PYTHON) if name == "claude" else "#!/bin/sh\n", encoding="utf-8")
        program.chmod(0o755)
    return bin_dir


def _home(root: Path) -> Path:
    home = root / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text('{"model": "sonnet"}', encoding="utf-8")
    (home / ".gemini").mkdir()
    return home


async def test_agent_clis_on_path_become_templates_with_their_unattended_flags(tmp_path: Path) -> None:
    bin_dir = _fake_agents(tmp_path)
    home = _home(tmp_path)
    templates = await anyio.to_thread.run_sync(detect_agent_templates, str(bin_dir), home, [tmp_path / "data"])
    assert set(templates) == {"claude", "codex", "aider", "gemini", "default"}
    assert templates["default"] == templates["claude"]
    assert templates["claude"]["argv"] == [
        str(bin_dir / "claude"),
        "-p",
        "--output-format",
        "json",
        "--dangerously-skip-permissions",
    ]
    assert templates["codex"]["argv"][1:] == [
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--sandbox",
        "danger-full-access",
        "-",
    ]
    assert templates["aider"]["argv"][1:3] == ["--message", "{prompt}"]
    assert "--yes-always" in templates["aider"]["argv"]
    assert templates["gemini"]["argv"][1:] == ["--output-format", "json", "--yolo"]
    assert [templates[name]["output"] for name in ("claude", "codex", "aider", "gemini")] == [
        "claude_json",
        "text",
        "aider_text",
        "gemini_json",
    ]
    assert all(template["network"] for template in templates.values())
    # The install prefix is readable; only config that exists is bound (no ~/.claude.json, ~/.codex here).
    assert templates["claude"]["ro_binds"] == [str(bin_dir), str(bin_dir.parent)]
    assert templates["claude"]["home_binds"] == [".claude"]
    assert templates["codex"]["home_binds"] == []
    assert templates["gemini"]["home_binds"] == [".gemini"]
    assert "ANTHROPIC_API_KEY" in templates["claude"]["env_passthrough"]
    # None found: no templates at all.
    assert await anyio.to_thread.run_sync(detect_agent_templates, str(tmp_path / "empty"), home, []) == {}


async def test_detected_templates_never_bind_the_stack_data(tmp_path: Path) -> None:
    bin_dir = _fake_agents(tmp_path)
    templates = await anyio.to_thread.run_sync(detect_agent_templates, str(bin_dir), tmp_path, [bin_dir.parent])
    assert templates["claude"]["ro_binds"] == []


async def test_operator_templates_win_over_detection(
    ralph_settings: Callable[..., StackSettings], tmp_path: Path
) -> None:
    bin_dir = _fake_agents(tmp_path)
    assert await anyio.to_thread.run_sync(agent_environment, ralph_settings(), {"PATH": str(bin_dir)}) == {}


async def test_a_detected_claude_runs_a_task_with_its_config_key_and_cost(
    ralph_settings: Callable[..., StackSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_agents(tmp_path)
    monkeypatch.setenv("HOME", str(_home(tmp_path)))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    bare = ralph_settings(command_templates={})
    environment = await anyio.to_thread.run_sync(agent_environment, bare, {"PATH": f"{bin_dir}:{os.defpath}"})
    templates = json.loads(environment[env_variable("ralph.command_templates")])
    settings = load_settings(
        **{**bare.model_dump(), "ralph": {**bare.ralph.model_dump(), "command_templates": templates}}
    )
    server = create_server(build_core("ralph", settings))
    async with Client(server.mcp) as client:
        submitted = await call(
            client,
            "submit_task",
            prompt="fix the tests",
            backend="command",
            completion_promise="DONE",
            max_cost_usd=5.0,
        )
        task = await wait_for_status(client, submitted["task_id"])
        iterations = await read_iterations(client, submitted["task_id"])
    assert (task["status"], task["completion_reason"], task["cost_usd"]) == ("completed", "promise_found", 0.25)
    assert iterations[0]["output"] == "prompt='fix the tests' model=sonnet key=yes <promise>DONE</promise>"
    assert iterations[0]["tokens"] == 10
