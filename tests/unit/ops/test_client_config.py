"""Snippet shapes per client: stdio by absolute path, HTTP with the key from an env var or prompt, no secrets."""

import json
from pathlib import Path

import pytest

from mcp_servers.ops.client_config import API_KEY_VARIABLE, CLIENTS, SERVERS, render, stdio_command
from mcp_servers.shared.config import load_settings

SECRET = "postgresql://app:hunter2@db.example.org/stack"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCP_STACK_POSTGRES__DSN", SECRET)
    monkeypatch.setenv("MCP_STACK_AIDB__SEARCH_LIMIT", "7")
    return load_settings(data_dir=tmp_path / "data")


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("http", [False, True])
def test_no_client_snippet_contains_a_secret_and_every_server_is_listed(settings, client: str, http: bool) -> None:  # type: ignore[no-untyped-def]
    text = render(settings, client, http=http)  # type: ignore[arg-type]
    assert "hunter2" not in text
    for server in SERVERS:
        assert server in text


def test_claude_desktop_stdio_runs_the_server_script_with_the_stack_environment(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    entry = json.loads(render(settings, "claude-desktop"))["mcpServers"]["aidb"]
    assert [entry["command"], *entry["args"]] == stdio_command("aidb")
    assert Path(entry["command"]).is_absolute()
    assert entry["env"]["MCP_STACK_DATA_DIR"] == str(tmp_path / "data")
    assert entry["env"]["MCP_STACK_AIDB__SEARCH_LIMIT"] == "7"
    assert "MCP_STACK_POSTGRES__DSN" not in entry["env"]


def test_http_snippets_send_the_key_from_the_environment_or_a_prompt(settings) -> None:  # type: ignore[no-untyped-def]
    code = json.loads(render(settings, "claude-code", http=True))["mcpServers"]["hybrid"]
    assert code == {
        "type": "http",
        "url": "http://127.0.0.1:8802/mcp",
        "headers": {"Authorization": f"Bearer ${{{API_KEY_VARIABLE}}}"},
    }
    vscode = json.loads(render(settings, "vscode", http=True))
    assert vscode["servers"]["ralph"]["headers"]["Authorization"] == "Bearer ${input:mcp-stack-api-key}"
    assert vscode["inputs"][0]["password"] is True
    cursor = json.loads(render(settings, "cursor", http=True, base_url="https://mcp.example.org/"))["mcpServers"]
    assert cursor["aidb"] == {
        "url": "https://mcp.example.org/aidb/mcp",
        "headers": {"Authorization": f"Bearer ${{env:{API_KEY_VARIABLE}}}"},
    }
    desktop = json.loads(render(settings, "claude-desktop", http=True))["mcpServers"]["aidb"]
    assert desktop["command"] == "npx" and "mcp-remote" in desktop["args"]


def test_inspector_lines_put_the_target_first(settings) -> None:  # type: ignore[no-untyped-def]
    lines = render(settings, "inspector", ("aidb",)).splitlines()
    assert lines[1] == "# aidb"
    assert lines[2].split(" --cli ")[1].startswith(stdio_command("aidb")[0])
    assert lines[2].endswith("--method tools/list")
    http_line = render(settings, "inspector", ("aidb",), http=True).splitlines()[2]
    assert "http://127.0.0.1:8801/mcp --header" in http_line and f"${API_KEY_VARIABLE}" in http_line
