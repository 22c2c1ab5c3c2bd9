"""One mix process at a time changes a root: an exclusive flock on ROOT/var/lib/mix/lock."""

from __future__ import annotations

import fcntl
import math
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from mix.errors import LockedError


class RootLock:
    """wait: None fails at once if another process holds the lock; a number of seconds
    (math.inf: no limit) waits that long for it first."""

    POLL = 0.1

    def __init__(self, state_dir: Path, wait: float | None = None) -> None:
        self.path = Path(state_dir) / "lock"
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._take()
        except BaseException:  # refused, or Ctrl-C/SIGTERM while waiting
            os.close(self.fd)
            self.fd = -1
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def _take(self) -> None:
        deadline = time.monotonic() + (self.wait or 0)
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not (self.wait and time.monotonic() < deadline):
                waited = f" after waiting {self.wait:g} s" if self.wait else ""
                raise LockedError(f"another mix process (pid {holder}) is changing this root "
                                  f"({self.path}){waited}",
                                  "wait for it to finish, or pass --wait[=SECONDS] to wait "
                                  "for it")
            if not told:
                limit = "" if math.isinf(self.wait) else f" (at most {self.wait:g} s)"
                print(f"mix: waiting for another mix process (pid {holder}) to finish "
                      f"changing this root{limit}", file=sys.stderr, flush=True)
                told = True
            time.sleep(min(self.POLL, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def holder(state_dir: Path) -> int | None:
        """The pid of a live process that holds (or last held and was killed holding) the
        lock, read without taking it: None if none is running."""
        try:
            pid = int((Path(state_dir) / "lock").read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1
