"""Write cpio archives in the "newc" format the Linux kernel unpacks as an initramfs.

Python's stdlib has no cpio module, and GNU cpio can only archive what is on disk:
it cannot add a device node (/dev/console) without root, nor set owner and mtime
without touching the files. The newc format is one 110-byte ASCII header per
entry (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst),
so this small writer makes the archive byte-for-byte reproducible by design:
entries sorted, owner 0:0, one mtime, inode numbers assigned in order.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import PurePosixPath

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. path is relative to the archive root ('bin/sh')."""

    path: str
    mode: int  # full st_mode: type bits | permission bits
    data: bytes = b""  # file content, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return Entry(path, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(name: bytes, ino: int, mode: int, nlink: int, mtime: int, size: int,
            rdev: tuple[int, int]) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _member(name: str, ino: int, entry: Entry | None, mtime: int) -> bytes:
    raw = name.encode()
    if entry is None:  # trailer
        head = _header(raw, 0, 0, 1, 0, 0, (0, 0))
        data = b""
    else:
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        head = _header(raw, ino, entry.mode, nlink, mtime, len(entry.data), entry.rdev)
        data = entry.data
    out = head + raw + b"\0"
    out += _pad4(len(out))
    return out + data + _pad4(len(data))


def validate(entries: list[Entry]) -> None:
    """Refuse what the kernel would unpack wrongly: absolute or '..' paths,
    duplicates, and members whose parent directory is not in the archive."""
    seen: set[str] = set()
    dirs = {e.path for e in entries if stat.S_ISDIR(e.mode)}
    for e in entries:
        p = PurePosixPath(e.path)
        if p.is_absolute() or ".." in p.parts or e.path in ("", "."):
            raise ValueError(f"cpio: bad member path {e.path!r} (must be relative, without '..')")
        if e.path in seen:
            raise ValueError(f"cpio: duplicate member {e.path!r}")
        seen.add(e.path)
        parent = str(p.parent)
        if parent != "." and parent not in dirs:
            raise ValueError(f"cpio: {e.path!r} has no parent directory entry {parent!r}")


def newc_archive(entries: list[Entry], mtime: int) -> bytes:
    """The archive of ENTRIES, sorted by path, every member owned by 0:0 with MTIME."""
    validate(entries)
    ordered = sorted(entries, key=lambda e: PurePosixPath(e.path).parts)
    parts = [_member(e.path, ino, e, mtime) for ino, e in enumerate(ordered, start=1)]
    parts.append(_member(_TRAILER, 0, None, 0))
    return b"".join(parts)
