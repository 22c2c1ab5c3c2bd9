"""Reading a GPT partition table from a disk image (the UEFI specification's
layout, 512-byte sectors as on every virtual disk MixOS makes).

    LBA 0   protective MBR; its first 440 bytes are boot code (GRUB's boot.img
            on a MixOS disk booted by BIOS)
    LBA 1   header: "EFI PART", CRC32 of itself, where the entries are, how many
    LBA 2+  entries: type GUID, unique GUID, first and last LBA, attributes, name
            (UTF-16LE)

Partition numbers are entry indexes + 1, as Linux and GRUB count them: MixOS
fixes them (mixboot.layout), whatever the partitions' order on the disk.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from mixboot.diskimage import Disk, ImageError

SECTOR = 512
SIGNATURE = b"EFI PART"
HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
ENTRY = struct.Struct("<16s16sQQQ72s")
MBR_BOOT_CODE = 440


@dataclass(frozen=True)
class Partition:
    number: int
    type_guid: str  # upper case, as layout.TYPE_GUIDS spells them
    guid: str
    first_lba: int
    last_lba: int
    name: str

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True)
class PartitionTable:
    disk_guid: str
    partitions: tuple[Partition, ...]
    mbr_boot_code: bytes

    def get(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw)).upper()


def read(disk: Disk) -> PartitionTable:
    """The GPT of DISK; ImageError when it has none or a damaged one."""
    if disk.size < 34 * SECTOR:
        raise ImageError(f"{disk.path}: {disk.size} bytes is too small for a partitioned disk")
    mbr = disk.read(0, SECTOR)
    header = disk.read(SECTOR, SECTOR)
    if header[:8] != SIGNATURE:
        raise ImageError(f"{disk.path}: no GPT partition table (no 'EFI PART' at sector 1)")
    (_sig, _revision, header_size, crc, _reserved, _current, _backup, _first, _last,
     disk_guid, entries_lba, count, entry_size, entries_crc) = HEADER.unpack_from(header)
    if not 92 <= header_size <= SECTOR:
        raise ImageError(f"{disk.path}: GPT header size {header_size} is invalid")
    check = bytearray(header[:header_size])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != crc:
        raise ImageError(f"{disk.path}: the GPT header's checksum does not match: damaged "
                         "partition table")
    if entry_size < ENTRY.size or count > 1024:
        raise ImageError(f"{disk.path}: GPT with {count} entries of {entry_size} bytes: "
                         "damaged partition table")
    table = disk.read(entries_lba * SECTOR, count * entry_size)
    if zlib.crc32(table) != entries_crc:
        raise ImageError(f"{disk.path}: the GPT entries' checksum does not match: damaged "
                         "partition table")
    parts = []
    for n in range(count):
        type_raw, guid_raw, first, last, _attrs, name = ENTRY.unpack_from(table, n * entry_size)
        if type_raw == bytes(16):
            continue
        parts.append(Partition(number=n + 1, type_guid=_guid(type_raw), guid=_guid(guid_raw),
                               first_lba=first, last_lba=last,
                               name=name.decode("utf-16-le", "replace").rstrip("\0")))
    return PartitionTable(disk_guid=_guid(disk_guid), partitions=tuple(parts),
                          mbr_boot_code=mbr[:MBR_BOOT_CODE])
