"""Backend helpers: command templates, the hybrid prompt, workspace validation."""

from pathlib import Path

import pytest

from mcp_servers.ralph.backends.command import render, template_name
from mcp_servers.ralph.backends.hybrid import compose_prompt
from mcp_servers.ralph.workspace import _resolve_under_roots
from mcp_servers.shared.errors import InvalidRequest


def test_template_names() -> None:
    assert template_name("command") == "default"
    assert template_name("command:aider") == "aider"
    assert template_name("command:") is None
    assert template_name("hybrid") is None


def test_render_substitutes_placeholders_and_leaves_braces_in_values_alone() -> None:
    argv = render(["claude", "-p", "{prompt}", "--id={task_id}"], {"prompt": "use {task_id} literally", "task_id": "7"})
    assert argv == ["claude", "-p", "use {task_id} literally", "--id=7"]


def test_hybrid_prompt_has_task_promise_context_and_previous_answer() -> None:
    prompt = compose_prompt(
        "fix the bug",
        promise="FIXED",
        context=[{"title": "Guide", "text": "read the logs"}],
        previous_output="tried restarting",
        number=2,
    )
    assert "Task (iteration 2):\nfix the bug" in prompt
    assert "<promise>FIXED</promise>" in prompt
    assert "[1] Guide\nread the logs" in prompt
    assert prompt.endswith("Your previous answer:\ntried restarting")


def test_workspaces_must_resolve_under_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    inside = root / "project"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    assert _resolve_under_roots(str(inside), [root]) == inside.resolve()
    for bad in (
        str(outside),
        str(root / "escape"),
        str(inside / ".." / ".." / "elsewhere"),
        "relative",
        str(root / "missing"),
    ):
        with pytest.raises(InvalidRequest):
            _resolve_under_roots(bad, [root])
    with pytest.raises(InvalidRequest):
        _resolve_under_roots(str(inside), [])
