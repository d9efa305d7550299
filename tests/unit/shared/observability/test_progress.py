"""ProgressLog: one record per interval, and always the final one."""

import logging

import pytest

from mcp_servers.shared.observability.progress import ProgressLog


def test_progress_logs_when_due_and_always_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = ProgressLog(
        logging.getLogger("test.progress"), "copying", unit="rows", every_seconds=2.0, clock=lambda: now[0]
    )
    with caplog.at_level(logging.INFO, logger="test.progress"):
        progress.update(0, 10, table="t")  # the first update is due
        now[0] = 1.0
        progress.update(4, 10, table="t")  # within the interval: nothing
        now[0] = 2.5
        progress.update(6, 10, table="t")  # due again
        now[0] = 2.6
        progress.update(10, 10, table="t")  # final: always
    reported = [(record.rows_done, record.rows_total, record.table) for record in caplog.records]  # type: ignore[attr-defined]
    assert reported == [(0, 10, "t"), (6, 10, "t"), (10, 10, "t")]
    assert {record.getMessage() for record in caplog.records} == {"copying"}
