"""Read files out of an ISO 9660 image (a MixOS ISO) without mounting it: what
`mix sdisk add` and the SDISK's menu need to learn about an image (its
mixos-image.json) as any user, on the build host or inside MixOS.

Read-only and small on purpose: the primary volume descriptor, directory
records, and the Rock Ridge "NM" names xorriso writes (ECMA-119 sections 8.4
and 9.1; IEEE P1282 / SUSP for NM), falling back to the ISO 9660 name
("MIXOS_IMAGE.JSON;1" read as "mixos_image.json"). Files in MixOS's images are
single extents (xorriso splits only files of 4 GiB and more).

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

SECTOR = 2048
FIRST_DESCRIPTOR = 16  # volume descriptors start at sector 16
MAX_DESCRIPTORS = 64
MAX_DIR_BYTES = 16 << 20  # a directory larger than this is not one of MixOS's
BOOT_RECORD = 17  # El Torito's boot record volume descriptor
EL_TORITO = b"EL TORITO SPECIFICATION"
PLATFORMS = {0x00: "bios", 0xEF: "uefi"}
BOOTABLE = 0x88


class IsoError(ValueError):
    """Not an ISO 9660 image, or not one this reader understands."""


@dataclass(frozen=True)
class Record:
    name: str
    extent: int  # first sector
    size: int
    is_dir: bool


@dataclass(frozen=True)
class Volume:
    label: str  # the volume identifier (MixOS's ISOs: MIXOS)
    created: str  # the volume creation date as written, YYYYMMDDHHMMSScc
    root: Record


def _rr_name(system_use: bytes) -> str | None:
    """The Rock Ridge NM name in a directory record's system use area, if any."""
    name = b""
    pos = 0
    while pos + 4 <= len(system_use):
        sig, length = system_use[pos:pos + 2], system_use[pos + 2]
        if length < 4:
            break
        if sig == b"NM":
            flags = system_use[pos + 4]
            name += system_use[pos + 5:pos + length]
            if not flags & 1:  # not continued in the next NM entry
                return name.decode("utf-8", "replace")
        pos += length
    return name.decode("utf-8", "replace") if name else None


def _iso_name(raw: bytes) -> str:
    name = raw.decode("ascii", "replace").split(";", 1)[0]
    return name.rstrip(".").lower()


def _record(data: bytes, pos: int) -> tuple[Record, int]:
    length = data[pos]
    extent = struct.unpack_from("<I", data, pos + 2)[0]
    size = struct.unpack_from("<I", data, pos + 10)[0]
    flags = data[pos + 25]
    name_len = data[pos + 32]
    raw = data[pos + 33:pos + 33 + name_len]
    su_start = pos + 33 + name_len + (0 if name_len % 2 else 1)
    if raw in (b"\x00", b"\x01"):
        name = "." if raw == b"\x00" else ".."
    else:
        name = _rr_name(data[su_start:pos + length]) or _iso_name(raw)
    return Record(name, extent, size, bool(flags & 2)), length


class IsoImage:
    """An open ISO 9660 image: `volume`, `read(path)`, `listdir(path)`."""

    def __init__(self, f: BinaryIO, where: str) -> None:
        self._f = f
        self.where = where
        self.volume = self._primary()

    @classmethod
    def open(cls, path: Path) -> IsoImage:
        f = path.open("rb")
        try:
            return cls(f, str(path))
        except BaseException:
            f.close()
            raise

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, sector: int, size: int) -> bytes:
        self._f.seek(sector * SECTOR)
        data = self._f.read(size)
        if len(data) != size:
            raise IsoError(f"{self.where}: truncated (sector {sector} is past its end)")
        return data

    def _primary(self) -> Volume:
        for n in range(FIRST_DESCRIPTOR, FIRST_DESCRIPTOR + MAX_DESCRIPTORS):
            self._f.seek(n * SECTOR)
            desc = self._f.read(SECTOR)
            if len(desc) < SECTOR or desc[1:6] != b"CD001":
                break
            if desc[0] == 1:
                root, _ = _record(desc, 156)
                label = desc[40:72].decode("ascii", "replace").strip()
                created = desc[813:829].decode("ascii", "replace")
                return Volume(label, created, root)
            if desc[0] == 255:
                break
        raise IsoError(f"{self.where}: not an ISO 9660 image (no primary volume descriptor)")

    def listdir(self, path: str = "/") -> list[Record]:
        rec = self.lookup(path)
        if not rec.is_dir:
            raise IsoError(f"{self.where}: {path} is not a directory")
        return self._entries(rec)

    def _entries(self, rec: Record) -> list[Record]:
        if rec.size > MAX_DIR_BYTES:
            raise IsoError(f"{self.where}: a directory of {rec.size} bytes; not a MixOS image")
        data = self._read(rec.extent, rec.size)
        out: list[Record] = []
        pos = 0
        while pos < len(data):
            if data[pos] == 0:  # records never cross a sector: skip to the next one
                pos = (pos // SECTOR + 1) * SECTOR
                continue
            entry, length = _record(data, pos)
            if entry.name not in (".", ".."):
                out.append(entry)
            pos += length
        return out

    def lookup(self, path: str) -> Record:
        rec = self.volume.root
        for part in [p for p in path.split("/") if p]:
            if not rec.is_dir:
                raise IsoError(f"{self.where}: no {path} (a file is in the way)")
            match = next((e for e in self._entries(rec) if e.name == part), None)
            if match is None:
                raise IsoError(f"{self.where}: no {path} in the image")
            rec = match
        return rec

    def boot_platforms(self) -> tuple[str, ...]:
        """The firmware the El Torito boot catalog (sector 17's boot record points
        at it) has a bootable image for: "bios" (platform 0, x86) and "uefi"
        (platform 0xEF), in that order (El Torito 1.0, sections 2.1-2.4)."""
        self._f.seek(BOOT_RECORD * SECTOR)
        record = self._f.read(SECTOR)
        if len(record) < SECTOR or record[0] != 0 or record[1:6] != b"CD001" \
                or not record[7:].startswith(EL_TORITO):
            return ()
        catalog = self._read(struct.unpack_from("<I", record, 0x47)[0], SECTOR)
        if catalog[0] != 1 or catalog[30:32] != b"\x55\xaa":
            return ()  # no validation entry: not a boot catalog
        found = set()
        if catalog[32] == BOOTABLE:  # the default entry, for the validation entry's platform
            found.add(PLATFORMS.get(catalog[1], ""))
        pos = 64
        while pos + 32 <= SECTOR and catalog[pos] in (0x90, 0x91):  # section headers
            platform, count = catalog[pos + 1], struct.unpack_from("<H", catalog, pos + 2)[0]
            entries = range(pos + 32, min(pos + 32 * (count + 1), SECTOR), 32)
            if any(catalog[e] == BOOTABLE for e in entries):
                found.add(PLATFORMS.get(platform, ""))
            pos += 32 * (count + 1)
        return tuple(p for p in ("bios", "uefi") if p in found)

    def read(self, path: str, limit: int = 1 << 20) -> bytes:
        """The bytes of the file PATH (at most LIMIT: metadata, not payloads)."""
        rec = self.lookup(path)
        if rec.is_dir:
            raise IsoError(f"{self.where}: {path} is a directory")
        if rec.size > limit:
            raise IsoError(f"{self.where}: {path} is {rec.size} bytes, more than {limit}")
        return self._read(rec.extent, rec.size)
