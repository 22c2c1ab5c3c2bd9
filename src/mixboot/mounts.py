"""The running system's mounts: what is mounted where, and a file system mounted
for the length of one change (`mix sdisk` on an SDISK partition, `mix vram` on
a disk released by VRAM). With BusyBox's mount inside MixOS, util-linux's on a
build host.

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class MountError(RuntimeError):
    """A mount or umount failed; the message has the command and what it said."""


def mount_types(table: Path = Path("/proc/mounts")) -> dict[str, str]:
    """Mount point -> file system type, of every mount."""
    types = {}
    try:
        for line in table.read_text().splitlines():
            fields = line.split()
            if len(fields) > 2:
                types[fields[1]] = fields[2]
    except OSError:
        pass
    return types


def run(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise MountError(f"{argv[0]} is not installed") from None
    if r.returncode != 0:
        raise MountError(f"{' '.join(argv)} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout


@contextlib.contextmanager
def mounted(source: str, options: str, *, fstype: str | None = None,
            prefix: str = "mixos-mnt-") -> Iterator[Path]:
    """SOURCE mounted with OPTIONS on a new temporary directory, synced and
    unmounted afterwards (a failed umount raises: the data may not be on disk)."""
    where = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        run(["mount", *(["-t", fstype] if fstype else []), "-o", options, source, str(where)])
        try:
            yield where
        finally:
            os.sync()
            run(["umount", str(where)])
    finally:
        shutil.rmtree(where, ignore_errors=True)
