"""AppArmor profiles a package ships, and what mix does about them (docs/security.md).

A package ships a profile as a file at the top of /etc/apparmor.d (as mixos-hardening's
are; subdirectories such as tunables/ hold shared parts, not profiles). On the running
system mix:
- after an install, upgrade or reinstall, loads (replaces) its profiles with
  `mixos-apparmor load FILE...`, before the package's services are started, so a
  daemon never starts unconfined;
- before a package is removed, after its services were stopped, unloads them with
  `mixos-apparmor unload FILE...`.

At boot mixos-apparmor loads every profile in /etc/apparmor.d anyway. With --root on
another tree, or when AppArmor is off, mix does nothing here.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

PROFILE = re.compile(r"/etc/apparmor\.d/([^/]+)")
MIXOS_APPARMOR = "/usr/sbin/mixos-apparmor"
KERNEL = Path("/sys/kernel/security/apparmor/profiles")
TIME_LIMIT = 120


def profiles(paths: Iterable[str]) -> list[str]:
    """The profile files among a package's file paths."""
    return sorted(p for p in paths if PROFILE.fullmatch(p))


def _live(root: Path) -> bool:
    return str(root.absolute()) == "/" and KERNEL.exists() and \
        os.access(MIXOS_APPARMOR, os.X_OK)


def _mixos_apparmor(action: str, files: list[str]) -> str:
    try:
        proc = subprocess.run([MIXOS_APPARMOR, action, *files], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIME_LIMIT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mixos-apparmor {action} failed: {e}"
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        said = f"mixos-apparmor {action} {' '.join(files)} failed (exit {proc.returncode}): {said}"
    return said


def _act(action: str, root: Path, paths: Iterable[str]) -> str:
    files = profiles(paths)
    if not files or not _live(root):
        return ""
    return _mixos_apparmor(action, files)


def installed(root: Path, paths: Iterable[str]) -> str:
    """After the package's files are in place: load its profiles."""
    return _act("load", root, paths)


def removing(root: Path, paths: Iterable[str]) -> str:
    """Before the package's files go: unload its profiles."""
    return _act("unload", root, paths)
