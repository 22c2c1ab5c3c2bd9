"""Debian's own security tools for the unit tests (sshd, apparmor_parser), taken
from their packages with the build's Debian fetcher (cached in $MIXOS_CACHE/debs)
instead of being installed on the host: installing openssh-server would start an
SSH server here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixbuild.packages import debian


def unpacked(*packages: str) -> dict[str, Path]:
    """package -> its unpacked tree; the test fails if apt cannot fetch them."""
    if os.geteuid() != 0:
        pytest.skip("fetching Debian packages with apt-get download needs root")
    return {name: tree for name, (_pkg, tree) in debian.fetch(list(packages)).items()}


def library_path(trees: list[Path]) -> str:
    dirs = []
    for tree in trees:
        for sub in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"):
            if (tree / sub).is_dir():
                dirs.append(str(tree / sub))
    return ":".join(dirs)
