"""Agent CLIs found on PATH become Ralph's command templates when the operator configured none (`mcp-stack up`).

Each known CLI (`claude`, `codex`, `aider`, `gemini`) gets a template named after it, with the flags it documents
for unattended runs and the output Ralph reads its answer, tokens and cost from; the first found is also
`default` (backend `command`). Its sandbox keeps the network (the CLI calls its API), reads the CLI's install
directory, sees its config and login under the sandbox's home (read-only), and gets its API key variables.
docs/ralph.md explains each template and where its flags are documented.
"""

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mcp_servers.shared.config import StackSettings, env_variable

__all__ = ["KNOWN_AGENTS", "AgentSpec", "agent_environment", "detect_agent_templates"]

logger = logging.getLogger(__name__)

# Already read-only in every sandbox: an install under it needs no bind of its own.
_SYSTEM_PREFIX: Final = Path("/usr")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """How one agent CLI runs unattended: arguments after the program, output format, config and keys."""

    program: str
    arguments: tuple[str, ...]
    output: str
    home_binds: tuple[str, ...]
    env: tuple[str, ...]


# In order of preference for `default`. The prompt goes on stdin (Ralph always sends it there) unless an
# argument takes it: no CLI then sees it twice, and no prompt meets the argv length limit.
KNOWN_AGENTS: Final[tuple[AgentSpec, ...]] = (
    # Print mode reads the prompt from stdin; JSON output carries result, is_error, total_cost_usd and usage.
    # Permission prompts cannot be answered unattended; the bubblewrap sandbox is the boundary instead.
    AgentSpec(
        "claude",
        ("-p", "--output-format", "json", "--dangerously-skip-permissions"),
        "claude_json",
        (".claude", ".claude.json"),
        ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL"),
    ),
    # `-` reads the prompt from stdin; the final message goes to stdout (progress to stderr). Codex's own
    # sandbox is replaced by Ralph's; --ephemeral writes no session files (its home is read-only here).
    AgentSpec(
        "codex",
        ("exec", "--skip-git-repo-check", "--ephemeral", "--sandbox", "danger-full-access", "-"),
        "text",
        (".codex",),
        ("OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL"),
    ),
    # One message, then exit; every confirmation answered yes; Ralph's git_checkpoint commits instead of aider.
    AgentSpec(
        "aider",
        ("--message", "{prompt}", "--yes-always", "--no-auto-commits", "--no-check-update", "--no-pretty"),
        "aider_text",
        (".aider.conf.yml",),
        ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY"),
    ),
    # Headless when stdin is not a terminal; JSON output carries response, stats and error; --yolo approves
    # tool calls (the sandbox is the boundary).
    AgentSpec(
        "gemini",
        ("--output-format", "json", "--yolo"),
        "gemini_json",
        (".gemini",),
        ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI"),
    ),
)


def _install_binds(found: Path, private: Sequence[Path]) -> list[str]:
    """What the CLI needs to start inside the sandbox: the directory it was found in and its install prefix
    (e.g. ~/.nvm/versions/node/v22 for an npm install, a pipx venv), unless /usr holds them already or they would
    expose the stack's own data."""
    real = found.resolve()
    candidates = [found.parent, real.parent.parent if real.parent.name == "bin" else real.parent]
    home = Path.home()
    binds: list[str] = []
    for candidate in candidates:
        if candidate.is_relative_to(_SYSTEM_PREFIX) or candidate in (Path("/"), home) or str(candidate) in binds:
            continue
        if any(candidate.is_relative_to(path) or path.is_relative_to(candidate) for path in private):
            continue
        binds.append(str(candidate))
    return binds


def detect_agent_templates(path: str | None, home: Path, private: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Templates for the known agent CLIs on `path`, and `default` for the first found; empty when none is.

    Blocking (stat calls); run it before the event loop matters or in a worker thread.

    Args:
        home: where the CLIs keep their config and login (only existing entries are bound).
        private: the stack's data directories, which no sandbox may see.
    """
    templates: dict[str, dict[str, Any]] = {}
    for agent in KNOWN_AGENTS:
        program = shutil.which(agent.program, path=path)
        if program is None:
            continue
        found = Path(program).absolute()
        templates[agent.program] = {
            "argv": [str(found), *agent.arguments],
            "network": True,
            "ro_binds": _install_binds(found, private),
            "home_binds": [name for name in agent.home_binds if (home / name).exists()],
            "env_passthrough": list(agent.env),
            "output": agent.output,
        }
    if templates:
        templates["default"] = next(iter(templates.values()))
    return templates


def agent_environment(settings: StackSettings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Ralph child's environment entry with the detected templates, when the operator configured none."""
    if settings.ralph.command_templates:
        return {}
    env = os.environ if environ is None else environ
    private = [settings.data_dir, settings.vector_path, settings.telemetry_path]
    templates = detect_agent_templates(env.get("PATH"), Path.home(), [path.absolute() for path in private])
    if not templates:
        logger.info("no agent CLI found on PATH; Ralph offers no command backend")
        return {}
    logger.info("agent CLIs found on PATH", extra={"agents": sorted(set(templates) - {"default"})})
    return {env_variable("ralph.command_templates"): json.dumps(templates)}
