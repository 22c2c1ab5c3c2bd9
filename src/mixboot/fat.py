"""Finding a file on a FAT12/16/32 file system in a disk image, read-only: enough
to tell whether an EFI system partition holds the removable-media boot loader
(EFI/BOOT/BOOTX64.EFI) without mounting it.

Names are matched on their 8.3 short names (case-insensitively), which every
FAT writer records; long-name entries are skipped. That covers the paths UEFI
firmware itself looks for, which are 8.3 by design.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mixboot.diskimage import Disk
from mixboot.image import ImageError

ATTR_LFN = 0x0F
ATTR_VOLUME = 0x08
ATTR_DIR = 0x10
MAX_DIR_BYTES = 1 << 20  # EFI/ and EFI/BOOT/ hold a few entries


@dataclass(frozen=True)
class FatEntry:
    name: str
    is_dir: bool
    cluster: int
    size: int


class Fat:
    """The FAT file system at bytes OFFSET..OFFSET+SIZE of DISK."""

    def __init__(self, disk: Disk, offset: int, size: int, where: str) -> None:
        self.disk = disk
        self.offset = offset
        self.size = size
        self.where = where
        boot = self._raw(0, 512)
        if boot[510:512] != b"\x55\xaa":
            raise ImageError(f"{where}: not a FAT file system (no boot sector signature)")
        (self.sector, self.per_cluster, reserved, fats, root_entries, total16, _media,
         fat16_size) = struct.unpack_from("<HBHBHHBH", boot, 11)
        total32, fat32_size = struct.unpack_from("<II", boot, 32)
        if self.sector not in (512, 1024, 2048, 4096) or self.per_cluster == 0 or fats == 0:
            raise ImageError(f"{where}: not a FAT file system (bad BIOS parameter block)")
        fat_sectors = fat16_size or fat32_size
        total = total16 or total32
        self.fat_offset = reserved * self.sector
        self.root_offset = self.fat_offset + fats * fat_sectors * self.sector
        self.root_bytes = root_entries * 32
        root_sectors = -(-self.root_bytes // self.sector)
        self.data_offset = self.root_offset + root_sectors * self.sector
        clusters = (total - (self.data_offset // self.sector)) // self.per_cluster
        # The FAT type is decided by the cluster count alone (Microsoft's FAT spec).
        self.bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        self.root_cluster = struct.unpack_from("<I", boot, 44)[0] if self.bits == 32 else 0
        # The extended boot record's volume label (what mkfs.vfat -n writes).
        label_at = 71 if self.bits == 32 else 43
        self.label = boot[label_at:label_at + 11].decode("latin-1").rstrip()

    def _raw(self, offset: int, length: int) -> bytes:
        if offset + length > self.size:
            raise ImageError(f"{self.where}: the FAT file system points past its partition")
        return self.disk.read(self.offset + offset, length)

    def _next(self, cluster: int) -> tuple[int, int]:
        """The cluster after CLUSTER in its chain, and the first end-of-chain value."""
        if self.bits == 12:
            raw = self._raw(self.fat_offset + cluster * 3 // 2, 2)
            value = struct.unpack("<H", raw)[0]
            return (value >> 4 if cluster & 1 else value & 0xFFF), 0xFF8
        if self.bits == 16:
            return struct.unpack("<H", self._raw(self.fat_offset + cluster * 2, 2))[0], 0xFFF8
        value = struct.unpack("<I", self._raw(self.fat_offset + cluster * 4, 4))[0]
        return value & 0x0FFFFFFF, 0x0FFFFFF8

    def _chain(self, cluster: int) -> bytes:
        """The clusters of a directory from CLUSTER on, following the FAT; a loop
        in a damaged FAT, or a chain longer than any directory here, ends it."""
        out = bytearray()
        csize = self.per_cluster * self.sector
        seen: set[int] = set()
        while cluster >= 2 and cluster not in seen and len(out) < MAX_DIR_BYTES:
            seen.add(cluster)
            out += self._raw(self.data_offset + (cluster - 2) * csize, csize)
            cluster, end = self._next(cluster)
            if cluster >= end:
                break
        return bytes(out)

    def _entries(self, data: bytes) -> list[FatEntry]:
        out = []
        for at in range(0, len(data) - 31, 32):
            raw = data[at:at + 32]
            if raw[0] == 0:
                break
            attr = raw[11]
            if raw[0] == 0xE5 or attr == ATTR_LFN or attr & ATTR_VOLUME:
                continue
            base = raw[0:8].decode("latin-1").rstrip()
            ext = raw[8:11].decode("latin-1").rstrip()
            hi, = struct.unpack_from("<H", raw, 20)
            lo, size = struct.unpack_from("<HI", raw, 26)
            out.append(FatEntry(f"{base}.{ext}" if ext else base, bool(attr & ATTR_DIR),
                                lo | (hi << 16 if self.bits == 32 else 0), size))
        return out

    def find(self, path: str) -> FatEntry | None:
        """The entry at PATH ("EFI/BOOT/BOOTX64.EFI"), or None."""
        if self.bits == 32:
            listing = self._entries(self._chain(self.root_cluster))
        else:
            listing = self._entries(self._raw(self.root_offset, self.root_bytes))
        found: FatEntry | None = None
        parts = [p for p in path.split("/") if p]
        for n, part in enumerate(parts):
            found = next((e for e in listing if e.name.upper() == part.upper()), None)
            if found is None:
                return None
            if n + 1 < len(parts):
                if not found.is_dir:
                    return None
                listing = self._entries(self._chain(found.cluster))
        return found
