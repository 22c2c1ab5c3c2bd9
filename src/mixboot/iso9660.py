"""Reading a file from an ISO 9660 image (the MixOS ISO) without mounting it:
enough for /mixos-release and the kernel's version.

    sector 16    primary volume descriptor ("\\x01CD001"): volume label, and the
                 root directory's record
    sector 17    El Torito boot record ("\\x00CD001\\x01EL TORITO SPECIFICATION"):
                 where the boot catalog is; the catalog's entries name the
                 platform each boot image is for (0 x86 BIOS, 0xEF UEFI)
    directories  records of (extent, size, flags, name); a name's Rock Ridge
                 "NM" entry, when present, is its real (POSIX) name

Sectors are 2048 bytes, numbers little-endian (ISO 9660 stores both orders).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mixboot.diskimage import Disk, ImageError

SECTOR = 2048
PVD_OFFSET = 16 * SECTOR
MAGIC = b"CD001"
EL_TORITO = b"EL TORITO SPECIFICATION"
PLATFORMS = {0x00: "bios", 0xEF: "uefi"}
BOOTABLE = 0x88


@dataclass(frozen=True)
class Record:
    name: str
    extent: int
    size: int
    is_dir: bool


def is_iso(disk: Disk) -> bool:
    return disk.size >= PVD_OFFSET + SECTOR and disk.read(PVD_OFFSET + 1, 5) == MAGIC


def volume_label(disk: Disk) -> str:
    return disk.read(PVD_OFFSET + 40, 32).decode("latin-1").strip()


def _name(record: bytes) -> str:
    name_len = record[32]
    raw = record[33:33 + name_len]
    at = 33 + name_len + (0 if name_len % 2 else 1)  # padded to an even offset
    while at + 4 <= len(record):  # the System Use area: SUSP entries
        sig, length = record[at:at + 2], record[at + 2]
        if length < 4:
            break
        if sig == b"NM":
            return record[at + 5:at + length].decode("utf-8", "surrogateescape")
        at += length
    name = raw.decode("latin-1").split(";")[0]
    return name.removesuffix(".")


def _records(disk: Disk, extent: int, size: int) -> list[Record]:
    data = disk.read(extent * SECTOR, size)
    out = []
    at = 0
    while at < len(data):
        length = data[at]
        if length == 0:  # records do not cross sectors: skip to the next one
            at = (at // SECTOR + 1) * SECTOR
            continue
        record = data[at:at + length]
        if len(record) < 34:
            raise ImageError(f"{disk.path}: a damaged ISO 9660 directory")
        rec_extent, = struct.unpack_from("<I", record, 2)
        rec_size, = struct.unpack_from("<I", record, 10)
        if record[33:34] not in (b"\0", b"\1") or record[32] != 1:  # not . or ..
            out.append(Record(_name(record), rec_extent, rec_size, bool(record[25] & 2)))
        at += length
    return out


def read_file(disk: Disk, path: str, limit: int = 1 << 20) -> bytes | None:
    """The first LIMIT bytes of the file at PATH, or None if there is none.
    Names match case-insensitively (plain ISO 9660 names are upper case)."""
    root = disk.read(PVD_OFFSET + 156, 34)
    extent, = struct.unpack_from("<I", root, 2)
    size, = struct.unpack_from("<I", root, 10)
    parts = [p for p in path.split("/") if p]
    for n, part in enumerate(parts):
        found = next((r for r in _records(disk, extent, size)
                      if r.name.lower() == part.lower()), None)
        if found is None or found.is_dir != (n + 1 < len(parts)):
            return None
        extent, size = found.extent, found.size
    return disk.read(extent * SECTOR, min(size, limit))


def boot_platforms(disk: Disk) -> tuple[str, ...]:
    """The firmware the El Torito boot catalog has a bootable image for: "bios"
    (platform x86) and "uefi" (platform EFI), in that order."""
    record = disk.read(17 * SECTOR, SECTOR)
    if record[0] != 0 or record[1:6] != MAGIC or not record[7:].startswith(EL_TORITO):
        return ()
    catalog_at, = struct.unpack_from("<I", record, 0x47)
    if (catalog_at + 1) * SECTOR > disk.size:
        return ()
    catalog = disk.read(catalog_at * SECTOR, SECTOR)
    if catalog[0] != 1 or catalog[30:32] != b"\x55\xaa":
        return ()  # no validation entry: not a boot catalog
    found = set()
    if catalog[32] == BOOTABLE:  # the initial/default entry, for the validation's platform
        found.add(PLATFORMS.get(catalog[1], ""))
    at = 64
    while at + 32 <= len(catalog) and catalog[at] in (0x90, 0x91):  # section headers
        platform, count = catalog[at + 1], struct.unpack_from("<H", catalog, at + 2)[0]
        entries = [catalog[at + 32 * (n + 1)] for n in range(count)
                   if at + 32 * (n + 2) <= len(catalog)]
        if BOOTABLE in entries:
            found.add(PLATFORMS.get(platform, ""))
        at += 32 * (count + 1)
    return tuple(p for p in ("bios", "uefi") if p in found)
