"""GRUB's environment block (/boot/grub/grubenv): read and changed in place.

The format (GRUB 2.06 grub-core/lib/envblk.c): a file of fixed size, 1024 bytes
as grub-editenv makes it, starting with the signature line, then one
`name=value` line per variable, then '#' up to the end:

    # GRUB Environment Block
    next_entry=rescue
    ##########################...

In a value GRUB escapes a backslash (and a newline) with a backslash; this module
does the same for backslashes and refuses newlines, so that the file stays one
variable per line for people and shell tools.

Why in place: GRUB's `save_env` cannot allocate file system blocks, so it writes
the file through the sectors it already occupies (loadenv.c checks the file's
block list first and refuses to write anywhere else). The file must therefore
never be recreated, truncated or resized once it exists: every change here
rewrites the same bytes of the same inode (open r+b, same size, fsync). Only
create() makes a new file.

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Mapping
from pathlib import Path

from mixboot import durable

SIGNATURE = b"# GRUB Environment Block\n"
SIZE = 1024  # grub-editenv's size; GRUB accepts any size, this module keeps a file's own
PADDING = b"#"
# GRUB accepts any name without '=' or a newline; a MixOS name must also be
# usable in grub.cfg as $name.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class GrubEnvError(ValueError):
    """A malformed block, or a variable that does not fit; the message names the file."""


def check(name: str, value: str) -> None:
    if not NAME.fullmatch(name):
        raise GrubEnvError(f"GRUB environment variable name {name!r} is invalid: use letters, "
                           "digits and '_', not starting with a digit")
    if "\n" in value or "\0" in value:
        raise GrubEnvError(f"GRUB environment variable {name}: the value must not contain "
                           "a newline or NUL")


def escape(value: str) -> bytes:
    return value.encode().replace(b"\\", b"\\\\")


def unescape(raw: bytes) -> str:
    return re.sub(rb"\\(.)", rb"\1", raw, flags=re.DOTALL).decode()


def parse(data: bytes, where: str = "environment block") -> dict[str, str]:
    """The variables of a block's bytes, in file order."""
    if not data.startswith(SIGNATURE):
        raise GrubEnvError(f"{where}: not a GRUB environment block (no "
                           f"{SIGNATURE.decode().strip()!r} line)")
    env: dict[str, str] = {}
    pos, end = len(SIGNATURE), len(data)
    while pos < end:
        if data[pos:pos + 1] == PADDING:  # a comment, or the padding to the end
            nl = data.find(b"\n", pos)
            pos = end if nl < 0 else nl + 1
            continue
        eq = data.find(b"=", pos)
        value_end = line_end(data, eq + 1) if eq >= 0 else -1
        if eq < 0 or value_end < 0:
            raise GrubEnvError(f"{where}: line at byte {pos} is not name=value")
        try:
            env[data[pos:eq].decode()] = unescape(data[eq + 1:value_end])
        except UnicodeDecodeError as e:
            raise GrubEnvError(f"{where}: line at byte {pos} is not UTF-8") from e
        pos = value_end + 1
    return env


def line_end(data: bytes, pos: int) -> int:
    """The index of the newline ending a value that starts at POS (a backslash
    escapes the next byte), or -1 when the block ends first."""
    while pos < len(data):
        if data[pos:pos + 1] == b"\n":
            return pos
        pos += 2 if data[pos:pos + 1] == b"\\" else 1
    return -1


def render(env: Mapping[str, str], size: int = SIZE, where: str = "environment block") -> bytes:
    """The block of SIZE bytes holding ENV, or GrubEnvError if it does not fit."""
    body = bytearray(SIGNATURE)
    for name, value in env.items():
        check(name, value)
        body += name.encode() + b"=" + escape(value) + b"\n"
    if len(body) > size:
        raise GrubEnvError(f"{where}: the variables need {len(body)} bytes, more than the "
                           f"block's {size}; remove some or shorten their values")
    return bytes(body) + PADDING * (size - len(body))


def create(path: Path, env: Mapping[str, str] | None = None) -> None:
    """A new block at PATH (refused if PATH exists: GRUB may hold its sectors)."""
    data = render(env or {}, SIZE, str(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError as e:
        raise GrubEnvError(f"{path} exists; change it with save() or update(), never "
                           "recreate it (GRUB writes it by its sectors)") from e
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    durable.fsync_dir(path.parent)


def load(path: Path) -> dict[str, str]:
    return parse(path.read_bytes(), str(path))


def _open(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise GrubEnvError(f"{path}: no GRUB environment block; make one with create()") from e
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _read_fd(fd: int, path: Path) -> bytes:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    parse(data, str(path))  # refuse to overwrite what is not an environment block
    return data


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)
    os.fsync(fd)


def save(path: Path, env: Mapping[str, str]) -> None:
    """Replace every variable of the block at PATH with ENV, in place."""
    fd = _open(path)
    try:
        old = _read_fd(fd, path)
        _write_fd(fd, render(env, len(old), str(path)))
    finally:
        os.close(fd)


def update(path: Path, changes: Mapping[str, str | None]) -> dict[str, str]:
    """Set (or, for None, remove) the variables CHANGES in the block at PATH, in
    place, keeping the others; returns the new environment."""
    fd = _open(path)
    try:
        old = _read_fd(fd, path)
        env = parse(old, str(path))
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        _write_fd(fd, render(env, len(old), str(path)))
        return env
    finally:
        os.close(fd)
