"""Disk image files read as the disk a VM sees: raw files and qcow2.

Every reader here and above (qcow2, ext4, fat, imageinfo) reports a file that is
not what it was taken for, or is damaged, as mixboot.image.ImageError, the one
"not a (readable) MixOS image" error; its message names the file and the fault.

`open_image(path)` returns a reader of the *virtual* disk, whatever the file's
format, so the partition table and file system readers above it (gpt, ext4, fat)
never know whether the VISO is compressed. Read-only and without root: no loop
device, no qemu-img, no mount; standard library only (it ships in MixOS, package
mixos-boot, for `mix viso`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from mixboot.image import ImageError

QCOW2_MAGIC = b"QFI\xfb"


class Disk(Protocol):
    """The virtual disk of an image file."""

    path: Path
    format: str  # "raw" or "qcow2"
    size: int  # virtual size in bytes

    def read(self, offset: int, length: int) -> bytes:
        """LENGTH bytes at OFFSET of the virtual disk (zeros where nothing is
        allocated); ImageError past the end."""
        ...

    def close(self) -> None: ...


class RawDisk:
    """A raw image: the file is the disk, byte for byte."""

    format = "raw"

    def __init__(self, path: Path, f: BinaryIO) -> None:
        self.path = path
        self._f = f
        # Seeking to the end measures block devices too (`mix viso info /dev/vda`),
        # whose st_size is 0.
        self.size = f.seek(0, os.SEEK_END)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise ImageError(f"{self.path}: read of {length} bytes at {offset} is past the end "
                             f"of the {self.size}-byte image (truncated?)")
        self._f.seek(offset)
        data = self._f.read(length)
        if len(data) != length:
            raise ImageError(f"{self.path}: short read at {offset} (file changed while read?)")
        return data

    def close(self) -> None:
        self._f.close()


def open_image(path: Path, depth: int = 0) -> Disk:
    """The virtual disk of PATH: qcow2 when it starts with qcow2's magic, else raw.
    DEPTH counts backing files, so that a loop of them ends in an error."""
    from mixboot import qcow2  # (qcow2 imports this module for ImageError)

    if path.is_dir():
        raise ImageError(f"{path} is a directory, not a disk image")
    f = path.open("rb")
    try:
        if f.read(4) == QCOW2_MAGIC:
            return qcow2.Qcow2Disk(path, f, depth)
        return RawDisk(path, f)
    except BaseException:
        f.close()
        raise
