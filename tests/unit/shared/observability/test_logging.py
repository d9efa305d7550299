"""JSON log lines carry the request id and `extra=` fields, and never break on odd values."""

import io
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_servers.shared.observability.logging import (
    NOTABLE,
    JsonFormatter,
    configure_logging,
    console_mode,
    request_id_var,
)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mcp_servers.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_line_is_json_with_request_id_and_extra_fields() -> None:
    token = request_id_var.set("abc-1")
    try:
        line = JsonFormatter().format(_record("tool call", tool="echo", duration_seconds=0.5))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["msg"] == "tool call"
    assert entry["request_id"] == "abc-1"
    assert entry["tool"] == "echo"
    assert entry["duration_seconds"] == 0.5
    assert entry["level"] == "INFO"


def test_unserialisable_extra_is_stringified() -> None:
    entry = json.loads(JsonFormatter().format(_record("x", payload=object())))
    assert entry["payload"].startswith("<object")
    assert "request_id" not in entry


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_terminal_gets_a_summary_and_the_file_every_record(tmp_path: Path) -> None:
    terminal = _Terminal()
    log_file = tmp_path / "logs" / "aidb.jsonl"
    configure_logging("INFO", console="auto", process="aidb", log_file=log_file, stream=terminal)
    logger = logging.getLogger("mcp_servers.test")
    logger.info("tool call", extra={"tool": "search"})
    logger.info("server restarted", extra={"server": "hybrid", **NOTABLE})
    logger.warning("breaker opened", extra={"dependency": "postgres"})
    logging.getLogger("httpx2").info("HTTP Request: GET http://127.0.0.1:8801/ready")
    lines = terminal.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "aidb: server restarted (server=hybrid)",
        "aidb: warning: breaker opened (dependency=postgres)",
    ]
    entries = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert [entry["msg"] for entry in entries] == ["tool call", "server restarted", "breaker opened"]
    assert "notable" not in entries[1]
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


@pytest.mark.usefixtures("restore_root_logging")
def test_a_pipe_gets_every_record_as_json_unless_the_console_level_is_raised() -> None:
    pipe = io.StringIO()
    configure_logging("INFO", console="auto", stream=pipe)
    logging.getLogger("mcp_servers.test").info("tool call")
    assert json.loads(pipe.getvalue())["msg"] == "tool call"
    quiet = io.StringIO()
    configure_logging("INFO", console="full", console_level="WARNING", stream=quiet)
    logging.getLogger("mcp_servers.test").info("database migrated")
    assert quiet.getvalue() == ""
    assert console_mode("auto", _Terminal()) == "summary"
