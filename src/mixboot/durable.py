"""Writes that survive a power cut at any moment: what the boot files need, since
a half-written grub.cfg, kernel link or EFI loader would leave a disk that does
not boot. Each new file goes to a temporary name in the same directory, is
synced, renamed over the old one, and the directory synced."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp(target: Path) -> Path:
    return target.with_name(f".{target.name}.new")


def write_text(target: Path, text: str, mode: int | None = None) -> None:
    """TARGET holds TEXT, old or new, never a mix; with MODE, created with those
    permissions (never readable by others in between)."""
    tmp = _tmp(target)
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    with open(fd, "w") as f:
        if mode is not None:
            os.fchmod(f.fileno(), mode)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(target)
    fsync_dir(target.parent)


def copy(source: Path, target: Path) -> None:
    """TARGET becomes a copy of SOURCE, old or new, never a mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(target)
    with source.open("rb") as src, tmp.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    tmp.replace(target)
    fsync_dir(target.parent)


def link_or_copy(source: Path, target: Path) -> None:
    """TARGET becomes a hard link to SOURCE (a copy across file systems)."""
    tmp = _tmp(target)
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        copy(source, tmp)
    tmp.replace(target)
    fsync_dir(target.parent)
