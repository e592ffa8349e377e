"""Progress of a long batch job: a line rewritten in place on a terminal, log lines elsewhere.

On a terminal: rows done, rows/s and, when the total is known, the time left, at most a few
times a second. In a Job's log (no terminal): one line every `every` updates, so the log stays
readable at any input size.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

log = logging.getLogger(__name__)

_REDRAW_S = 0.25


class Progress:
    def __init__(self, terminal: TextIO | None, every: int) -> None:
        self.terminal, self.every = terminal, every
        self.total: int | None = None
        self.rows = self.updates = 0
        self.started = self.drawn = time.perf_counter()

    def start(self, total: int | None) -> None:
        self.total, self.started = total, time.perf_counter()

    def update(self, rows: int) -> None:
        self.rows += rows
        self.updates += 1
        now = time.perf_counter()
        if self.terminal is not None and now - self.drawn >= _REDRAW_S:
            self.terminal.write(f"\r{self.line()}\033[K")
            self.terminal.flush()
            self.drawn = now
        elif self.terminal is None and self.updates % self.every == 0:
            log.info("%s", self.line())

    def finish(self) -> None:
        if self.terminal is not None:
            self.terminal.write(f"\r{self.line()}\033[K\n")
            self.terminal.flush()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        speed = self.rows / elapsed
        done = f"{self.rows:,} rows" + (f" of {self.total:,}" if self.total else "")
        line = f"{done}, {speed:,.0f} rows/s"
        if self.total and speed > 0:
            line += f", {max(self.total - self.rows, 0) / speed:.0f} s left"
        return line
