"""An overall progress line on a terminal: items and bytes done of the total, speed, time
left. Standard library only (MixOS's Python is trimmed; a progress library would cost
more than these lines), drawn on stderr at most ten times a second, cleared when done."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

INTERVAL = 0.1


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """What: "downloading" or "extracting"; items and total_bytes: the whole job.
    enabled False (stderr not a terminal, unless asked) draws nothing."""

    def __init__(self, what: str, items: int, total_bytes: int, enabled: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.what, self.items, self.total = what, items, max(0, total_bytes)
        self.item, self.name = 0, ""
        self.done = 0
        self.start = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def next_item(self, name: str) -> None:
        self.item = min(self.items, self.item + 1)
        self.name = name
        self.draw(force=True)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        speed = self.done / elapsed
        parts = [f"{self.what} [{self.item}/{self.items}]"]
        if self.total:
            pct = min(100, 100 * self.done // self.total)
            parts.append(f"{pct:3d}% {_size(self.done)}/{_size(self.total)}")
            parts.append(f"{_size(speed)}/s")
            left = (self.total - self.done) / speed if speed > 0 and self.done else None
            parts.append(f"ETA {_clock(left)}" if left is not None else "ETA -:--")
        parts.append(self.name)
        text = "  ".join(parts)
        width = shutil.get_terminal_size((80, 24)).columns - 1
        return text[:width]

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < INTERVAL:
            return
        self.last = now
        self.stream.write("\r\033[K" + self.line())
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled and self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
