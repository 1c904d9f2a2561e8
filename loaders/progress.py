"""A progress line for loads: rows done, rows/s and percent, on a terminal only."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressLine:
    """Call with (phase, done, total); redraws at most every 0.2 s; quiet off a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.phase = ""
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if phase != self.phase:
            if self.phase:
                self.stream.write("\n")
            self.phase, self.started = phase, now
        elif now - self.last < 0.2 and done < total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        percent = 100 * done / total if total else 100.0
        unit = "rows" if phase != "publishing" else "workers"
        self.stream.write(
            f"\r{phase:<10} {done:>14,}/{total:,} {unit}  {percent:5.1f}%  {rate:>12,.0f} {unit}/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.phase:
            self.stream.write("\n")
            self.stream.flush()
