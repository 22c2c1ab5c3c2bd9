"""What runsv says about a service: its supervise/status record, and the records
/usr/lib/mixos/sv-finish keeps beside it (restarts, fails, last-exit)."""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

TAI_OFFSET = (1 << 62) + 10  # TAI64 label of the Unix epoch (runit's clock)
# sv-finish counts a run shorter than this as a quick exit, and a service as failing
# from its second quick exit in a row (docs/services.md).
QUICK = 10
FAILING_AFTER = 2


@dataclass(frozen=True)
class Status:
    supervised: bool      # runsv runs for it (/run/service/NAME/supervise/ok is open)
    state: str            # "run", "finish" (ended, backing off), "down", "-" (unsupervised)
    pid: int
    since: float          # Unix time of the last start (run) or stop (down)
    want: str             # "up", "down" or ""
    restarts: int         # ends while it was wanted up, since it was supervised
    fails: int            # quick exits in a row
    last_exit: str        # "exited with status 1 after 0 s", or ""

    def label(self, now: float) -> str:
        if not self.supervised:
            return "stopped"
        failing = self.fails >= FAILING_AFTER and (self.state != "run" or now - self.since < QUICK)
        if failing:
            return "failing"
        if self.state == "run":
            return "running"
        if self.state == "finish":
            return "restarting"
        return "stopped"


def decode_status(record: bytes) -> tuple[str, int, float, str]:
    """runsv's 20-byte supervise/status: TAI64N start (big-endian), pid (little-endian),
    paused, want ('u'/'d'), got TERM, run_or_finish (0 down, 1 run, 2 finish)."""
    if len(record) != 20:
        raise ValueError(f"supervise/status has {len(record)} bytes, not 20")
    seconds, nanos = struct.unpack(">QI", record[:12])
    (pid,) = struct.unpack("<I", record[12:16])
    want = {ord("u"): "up", ord("d"): "down"}.get(record[17], "")
    state = {0: "down", 1: "run", 2: "finish"}.get(record[19], "down")
    return state, pid, seconds - TAI_OFFSET + nanos / 1e9, want


def _int_file(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def describe_exit(line: str) -> str:
    """sv-finish's last-exit line "TIME CODE SIGNAL RAN" in words."""
    try:
        _, code, sig, ran = line.split()
    except ValueError:
        return ""
    why = f"killed by signal {sig}" if code == "-1" else f"exited with status {code}"
    return f"{why} after {ran} s"


def _supervised(svdir: Path) -> bool:
    try:
        fd = os.open(svdir / "supervise" / "ok", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def read_status(svdir: Path) -> Status:
    if not svdir.is_dir() or not _supervised(svdir):
        return Status(False, "-", 0, 0.0, "", 0, 0, "")
    state, pid, since, want = decode_status((svdir / "supervise" / "status").read_bytes())
    try:
        last = describe_exit((svdir / "last-exit").read_text().strip())
    except OSError:
        last = ""
    return Status(True, state, pid, since, want, _int_file(svdir / "restarts"),
                  _int_file(svdir / "fails"), last)


def human_duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def now() -> float:
    return time.time()
