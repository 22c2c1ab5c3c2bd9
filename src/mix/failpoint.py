"""Checkpoints at which a crash test makes mix SIGKILL itself, deterministically.

A transaction passes a checkpoint after every file it stages, renames or deletes, and
at the named points between its phases (see mix.transaction):

  staging     the journal row says "staging"; nothing extracted yet
  staged      every temporary written and synced, pre-scripts run; nothing committed
  committed   the database holds the new state; no file renamed yet
  applying    half of the renames done: the files on disk are part old, part new
  applied     the journal row deleted; post-scripts not run yet
  restarting  mix upgraded itself and what it runs on; the new mix not started yet

MIX_FAILPOINT_KILL=N kills mix at its Nth checkpoint (every one counts);
MIX_FAILPOINT_KILL=NAME or NAME@K at the Kth time (the first by default) it reaches the
named one. When an upgrade starts mix anew (mix.changes.continue_upgrade), the counts go
with it in MIX_FAILPOINT_DONE, so one command line is counted as one run. Without
MIX_FAILPOINT_KILL in its environment mix only counts; the variables have no other use.
"""

from __future__ import annotations

import os
import signal

from mix.errors import UsageError

NAMES = ("staging", "staged", "committed", "applying", "applied", "restarting")
KILL = "MIX_FAILPOINT_KILL"
DONE = "MIX_FAILPOINT_DONE"


class _Passed:
    """Checkpoints passed so far in this command (this process and the mix it replaced)."""

    def __init__(self) -> None:
        count, _, names = os.environ.get(DONE, "").partition(":")
        self.count = int(count) if count.isdigit() else 0
        self.names = [n for n in names.split(",") if n]

    def carried(self) -> str:
        """The value of MIX_FAILPOINT_DONE for the mix this one executes."""
        return f"{self.count}:{','.join(self.names)}"


_passed: _Passed | None = None


def passed() -> _Passed:
    global _passed
    if _passed is None:
        _passed = _Passed()
    return _passed


def checkpoint(name: str = "") -> None:
    """Pass a checkpoint (NAME: one of NAMES); SIGKILL this process if it is the one
    MIX_FAILPOINT_KILL names."""
    assert not name or name in NAMES, name
    spec = os.environ.get(KILL)
    if spec is None:
        return
    p = passed()
    p.count += 1
    if name:
        p.names.append(name)
    if spec.isdigit():
        hit = p.count == int(spec)
    else:
        want, _, nth = spec.partition("@")
        if want not in NAMES or not (nth.isdigit() or not nth):
            raise UsageError(f"{KILL}={spec}: not a checkpoint",
                             "give N, NAME or NAME@K, NAME one of " + ", ".join(NAMES))
        hit = name == want and p.names.count(name) == (int(nth) if nth.isdigit() else 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
