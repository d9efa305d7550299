"""Settings: environment, nested variables, secret files, TOML, and one-line errors."""

from pathlib import Path

import pytest

from mcp_servers.shared.config import CONFIG_FILE_VARIABLE, env_variable, load_settings
from mcp_servers.shared.errors import ConfigurationError


def test_defaults_are_embedded_and_loopback() -> None:
    settings = load_settings()
    assert settings.postgres.dsn is None
    assert settings.vectors.backend == "edge"
    assert settings.http.host == "127.0.0.1"
    assert settings.auth.required is True


def test_nested_environment_variable_sets_a_section_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_STACK_AIDB__SEARCH_LIMIT", "7")
    monkeypatch.setenv("MCP_STACK_RATE_LIMIT__BURST", "3")
    settings = load_settings()
    assert settings.aidb.search_limit == 7
    assert settings.rate_limit.burst == 3


def test_secret_file_supplies_the_dsn_and_never_prints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://user:hunter2@127.0.0.1/db\n", encoding="utf-8")
    monkeypatch.setenv("MCP_STACK_POSTGRES__DSN_FILE", str(secret))
    settings = load_settings()
    assert settings.postgres.dsn is not None
    assert settings.postgres.dsn.get_secret_value() == "postgresql://user:hunter2@127.0.0.1/db"
    assert "hunter2" not in repr(settings)


def test_toml_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "stack.toml"
    config.write_text("[aidb]\nsearch_limit = 4\ncache_ttl_seconds = 5\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("MCP_STACK_AIDB__SEARCH_LIMIT", "9")
    settings = load_settings()
    assert settings.aidb.search_limit == 9
    assert settings.aidb.cache_ttl_seconds == 5


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MCP_STACK_POSTGRES__POOL_MAX_SIZE", "many", "MCP_STACK_POSTGRES__POOL_MAX_SIZE"),
        ("MCP_STACK_POSTGRES__POOL_MAX_SIZE", "0", "MCP_STACK_POSTGRES__POOL_MAX_SIZE"),
        ("MCP_STACK_VECTORS__BACKEND", "milvus", "MCP_STACK_VECTORS__BACKEND"),
        ("MCP_STACK_POSTGRES__DSN", "mysql://x", "MCP_STACK_POSTGRES"),
    ],
)
def test_bad_value_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_missing_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCP_STACK_POSTGRES__DSN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match="MCP_STACK_POSTGRES__DSN_FILE"):
        load_settings()


def test_env_variable_names_the_variable_that_load_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    variable = env_variable("aidb.search_limit")
    assert variable == "MCP_STACK_AIDB__SEARCH_LIMIT"
    monkeypatch.setenv(variable, "11")
    assert load_settings().aidb.search_limit == 11
    assert env_variable("data_dir") == "MCP_STACK_DATA_DIR"


@pytest.mark.parametrize("path", ["aidb.no_such_field", "nosection.x", "data_dir.x", ""])
def test_env_variable_refuses_a_path_that_names_no_setting(path: str) -> None:
    with pytest.raises(ValueError):
        env_variable(path)


def test_a_bad_list_item_names_the_list_variable_and_the_item(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = '{"name": "x", "kind": "cloud", "base_url": "http://127.0.0.1:1/v1", "model": "m"}'
    monkeypatch.setenv("MCP_STACK_HYBRID__BACKENDS", f"[{backend}]")
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    message = str(error.value)
    # The variable is the one that holds the JSON list; no MCP_STACK_HYBRID__BACKENDS__KIND exists.
    assert message.startswith("invalid configuration: MCP_STACK_HYBRID__BACKENDS (item 0, field kind): ")
    assert "__KIND" not in message
