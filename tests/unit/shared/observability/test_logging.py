"""JSON log lines carry the request id and `extra=` fields, and never break on odd values."""

import json
import logging

from mcp_servers.shared.observability.logging import JsonFormatter, request_id_var


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
