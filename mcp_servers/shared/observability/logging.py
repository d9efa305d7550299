"""Logs: JSON lines with the current request id on every record, to a private file per process and to stderr.

On stderr (stdout belongs to stdio) a process logs either every record (`full`: JSON or text, what a collector or
an MCP client's log pane reads) or, on a terminal, a `summary`: warnings and the few records marked `NOTABLE`, one
short human line each. The file under `<data_dir>/logs/` always gets every record as JSON, rotated by size.
"""

import contextvars
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from mcp_servers.shared.files import make_private_dir

__all__ = [
    "NOTABLE",
    "ConsoleMode",
    "JsonFormatter",
    "SummaryFormatter",
    "configure_logging",
    "console_mode",
    "request_id_var",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

ConsoleMode = Literal["auto", "summary", "full"]

NOTABLE: Final = {"notable": True}
"""`extra=` marker of an INFO record worth a line in the terminal summary (a server restarted, settings applied)."""
_MARKER: Final = "notable"
# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", _MARKER}
_SUMMARY_MAX_CHARS: Final = 300
# Loggers of HTTP clients that report every request at INFO (the dashboard polls /ready and /metrics): our own
# middleware and breakers report what matters.
_QUIET_LOGGERS: Final = ("uvicorn.access", "httpx", "httpx2", "httpcore", "httpcore2")


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, the `extra=` fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry |= _extra(record)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class SummaryFormatter(logging.Formatter):
    """`HH:MM:SS process: message (key=value, ...)`, one bounded line; tracebacks stay in the log file."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in _extra(record).items())
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {self._process}: {level}"
        line += record.getMessage() + (f" ({fields})" if fields else "")
        if record.exc_info:
            line += " [traceback in the log file]"
        return line if len(line) <= _SUMMARY_MAX_CHARS else line[: _SUMMARY_MAX_CHARS - 1] + "…"


def _summary_filter(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or bool(getattr(record, _MARKER, False))


def console_mode(mode: ConsoleMode, stream: TextIO) -> Literal["summary", "full"]:
    """`auto` is `summary` on a terminal and `full` otherwise (a pipe, a file, an MCP client's log)."""
    if mode != "auto":
        return mode
    return "summary" if stream.isatty() else "full"


def _private_file_handler(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    make_private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # 0600 whatever the umask
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    *,
    console: ConsoleMode = "full",
    console_level: str | None = None,
    process: str = "mcp-stack",
    log_file: Path | None = None,
    max_file_bytes: int = 10 * 1024 * 1024,
    file_backups: int = 3,
    stream: TextIO | None = None,
) -> None:
    """Install the stderr handler (and the file handler) on the root logger; call before building any MCPServer.

    Args:
        console_level: the least level stderr shows (one-shot CLI commands pass WARNING: their answer is the
            output); the root level, which live settings change, still governs the file.
        log_file: every record as JSON, rotated at `max_file_bytes`; unset = none. A file that cannot be opened
            (a read-only data dir) is reported on stderr and skipped.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    if console_mode(console, stream) == "summary":
        handler.setFormatter(SummaryFormatter(process))
        handler.addFilter(_summary_filter)
    else:
        handler.setFormatter(
            JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    if console_level is not None:
        handler.setLevel(console_level)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        # Access logs would print every request's path with its query string; our middleware logs calls instead.
        logging.getLogger(name).setLevel(logging.WARNING)
    if log_file is not None:
        try:
            root.addHandler(_private_file_handler(log_file, max_file_bytes, file_backups))
        except OSError as exc:
            logging.getLogger(__name__).warning(
                "log file not opened", extra={"path": str(log_file), "error": exc.strerror}
            )
