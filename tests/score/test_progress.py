"""Progress lines: rewritten in place on a terminal, a log line every N batches elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from mlops.progress import Progress


def test_a_terminal_sees_rows_speed_and_time_left() -> None:
    terminal = io.StringIO()
    progress = Progress(terminal, every=100)
    progress.start(total=1000)
    progress.drawn = -1.0  # as if the last redraw were long ago
    progress.update(250)
    progress.finish()
    first, last = terminal.getvalue().split("\r")[1:]
    assert first.startswith("250 rows of 1,000, ") and " rows/s, " in first and " s left" in first
    assert last.startswith("250 rows of 1,000") and last.endswith("\n")


def test_without_a_terminal_one_log_line_per_n_batches(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(None, every=3)
    progress.start(total=None)
    with caplog.at_level(logging.INFO, logger="mlops.progress"):
        for _ in range(7):
            progress.update(10)
        progress.finish()
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(",")[0] for line in lines] == ["30 rows", "60 rows"]
    assert all("left" not in line for line in lines), "no total, no time left"
