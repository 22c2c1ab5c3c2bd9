"""Make a MixOS disk bootable from the prebuilt GRUB kit (`make bootloader`),
without GRUB's tools: what grub-install and grub-bios-setup do for a GPT disk
with a BIOS boot partition, plus the UEFI loader copied onto the ESP.

The disk afterwards (laid out as mixboot.layout says):

    sector 0     boot.img, GRUB's MBR code; the protective MBR's disk signature
                 and partition table kept. It loads the sector named in its
                 kernel-sector field: the first of ...
    partition 1  core.img. Its first sector (diskboot) ends with a block list,
                 the sectors holding the rest of core.img, which it loads.
    ESP          EFI/BOOT/BOOTX64.EFI, found by UEFI firmware without NVRAM entries

Both GRUBs then read layout.GRUB_PREFIX, "(,gpt3)/boot/grub", from the disk they
came from: grub.cfg on the root partition; their modules are built in.

Order: every check first (the kit's images, the GPT, partition 1, the ESP
directory); nothing is written until all pass. Then core.img into partition 1
(which nothing else uses), then sector 0, so that an interrupted install leaves
either the old boot code or a complete chain; then the EFI loader, under a
temporary name renamed into place.

Offsets are GRUB 2.06's: include/grub/i386/pc/boot.h (boot.img),
include/grub/offsets.h and grub-core/boot/i386/pc/diskboot.S (core.img's first
sector), util/setup.c (what grub-bios-setup patches), and the UEFI
specification's GPT header and entry (chapter 5).

One thing grub-bios-setup does is left out: it fills the BIOS boot partition
beyond core.img with Reed-Solomon parity (up to core.img's size again), so that
GRUB can repair a core.img partly overwritten by tools that use the gap after
the MBR. A partition of its own is no such gap; GRUB skips the repair when the
parity size is 0, as grub-mkimage leaves it and `grub-install --no-rs-codes`
installs it.

Standard library only: this runs inside MixOS's trimmed Python.
"""

from __future__ import annotations

import binascii
import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mixboot import durable, layout

SECTOR = 512  # GRUB's i386-pc boot code reads 512-byte sectors only

# --- boot.img (include/grub/i386/pc/boot.h) ------------------------------------------
# The BIOS parameter block: boot.img jumps over it; grub-bios-setup keeps the
# disk's own bytes there (some BIOSes check it when booting USB sticks as floppies).
BOOT_BPB_START = 0x03  # GRUB_BOOT_MACHINE_BPB_START
BOOT_BPB_END = 0x5A  # GRUB_BOOT_MACHINE_BPB_END
# u64 LE: the LBA of core.img's first sector, which boot.img loads and jumps to.
BOOT_KERNEL_SECTOR = 0x5C  # GRUB_BOOT_MACHINE_KERNEL_SECTOR
# u8: the BIOS drive to read from; 0xff: the one in DL, the drive the BIOS booted.
BOOT_DRIVE = 0x64  # GRUB_BOOT_MACHINE_BOOT_DRIVE
BOOT_DRIVE_FROM_BIOS = 0xFF
# 2 bytes: a short jump over the code that forces DL to 0x80 when the BIOS passes a
# drive number without the hard-disk bit (buggy BIOSes pass 0 for the first disk).
# grub-bios-setup replaces it with two NOPs on a hard disk, so the fix-up runs.
BOOT_DRIVE_CHECK = 0x66  # GRUB_BOOT_MACHINE_DRIVE_CHECK
JMP_SHORT = 0xEB
NOP = 0x90
# Kept from the disk: the Windows NT disk signature (0x1b8, 4 bytes), 2 reserved
# bytes, the four MBR partition entries (0x1be..0x1fe): the protective MBR.
MBR_KEEP_START = 0x1B8  # GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC
MBR_KEEP_END = 0x1FE  # GRUB_BOOT_MACHINE_PART_END
MBR_PART_START = 0x1BE  # GRUB_BOOT_MACHINE_PART_START
MBR_ENTRY_SIZE = 16
MBR_ENTRY_TYPE = 4  # offset of the partition type byte in an MBR entry
MBR_TYPE_GPT_PROTECTIVE = 0xEE
BOOT_SIGNATURE_AT = 0x1FE  # 0x55 0xaa
BOOT_SIGNATURE = b"\x55\xaa"

# --- core.img's first sector, diskboot.img (grub-core/boot/i386/pc/diskboot.S) -------
# Block lists grow down from the end of the sector, 12 bytes each:
# u64 LE start LBA, u16 LE sector count, u16 LE real-mode segment to load at.
# A count of 0 ends the list.
BLOCKLIST_SIZE = 12  # GRUB_BOOT_MACHINE_LIST_SIZE
BLOCKLIST = struct.Struct("<QHH")
FIRST_BLOCKLIST = SECTOR - BLOCKLIST_SIZE  # 0x1f4, diskboot.S "firstlist" - LIST_SIZE
# Where diskboot loads core.img's second sector: GRUB_BOOT_I386_PC_KERNEL_SEG
# (0x800, include/grub/offsets.h) plus one sector (0x20 paragraphs), as
# grub-mkimage fills in the default list and util/setup.c (current_segment) does.
CORE_SEGMENT = 0x800 + (SECTOR >> 4)
# grub-mkimage's default first list: start LBA 2 (diskboot.S), then this module
# replaces it, as setup.c does. Its count is core.img's sectors after the first.
MKIMAGE_DEFAULT_START = 2
# core.img is loaded at GRUB_KERNEL_I386_PC_LINK_ADDR (0x9000) and must end below
# 0x78000 (util/setup.c, maxsec): 888 sectors at most, whatever the partition's size.
CORE_MAX_SECTORS = (0x78000 - 0x9000) // SECTOR

# --- GPT (UEFI specification 2.10, 5.3) ----------------------------------------------
GPT_HEADER_LBA = 1
GPT_SIGNATURE = b"EFI PART"
GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # signature .. entries CRC32, 92 bytes
GPT_HEADER_CRC_AT = 16  # u32: the header's CRC32, computed with this field zeroed
GPT_ENTRY = struct.Struct("<16s16sQQQ72s")  # type, unique GUID, first/last LBA, attrs, name
MAX_GPT_ENTRIES_BYTES = 1 << 20  # sanity bound on a header's entry array


# The kit: the files `make bootloader` (mixbuild.images.bootloader) puts in one directory.
KIT_BOOT_IMG = "boot.img"  # GRUB's i386-pc boot.img, as Debian ships it
KIT_CORE_IMG = "core.img"  # grub-mkimage -O i386-pc, prefix layout.GRUB_PREFIX
KIT_EFI = "BOOTX64.EFI"  # grub-mkimage -O x86_64-efi, the same prefix
KIT_FILES = (KIT_BOOT_IMG, KIT_CORE_IMG, KIT_EFI)


class BootloaderError(RuntimeError):
    """The disk or the kit cannot be made to boot; the message says which and why."""


@dataclass(frozen=True)
class Kit:
    """The prebuilt images (artifacts/grub, or wherever the installer carries them)."""

    boot_img: bytes
    core_img: bytes
    efi: Path

    @classmethod
    def load(cls, directory: Path) -> Kit:
        paths = {name: directory / name for name in KIT_FILES}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise BootloaderError(f"GRUB kit {directory}: missing {', '.join(missing)}; "
                                  "build it with 'make bootloader'")
        kit = cls(paths[KIT_BOOT_IMG].read_bytes(), paths[KIT_CORE_IMG].read_bytes(),
                  paths[KIT_EFI])
        kit.check(directory)
        return kit

    @property
    def core_sectors(self) -> int:
        return -(-len(self.core_img) // SECTOR)

    def check(self, directory: Path) -> None:
        boot = self.boot_img
        if len(boot) != SECTOR or boot[BOOT_SIGNATURE_AT:] != BOOT_SIGNATURE \
                or boot[BOOT_DRIVE_CHECK] not in (JMP_SHORT, NOP):
            raise BootloaderError(f"{directory}/boot.img is not GRUB 2's i386-pc boot.img "
                                  "(512 bytes, 55 aa, a jump at the drive check)")
        if len(self.core_img) < 2 * SECTOR:
            raise BootloaderError(f"{directory}/core.img is too small "
                                  f"({len(self.core_img)} bytes) to be a GRUB core image")
        start, count, segment = BLOCKLIST.unpack_from(self.core_img, FIRST_BLOCKLIST)
        if (start, count, segment) != (MKIMAGE_DEFAULT_START, self.core_sectors - 1,
                                       CORE_SEGMENT):
            raise BootloaderError(
                f"{directory}/core.img does not start with grub-mkimage's i386-pc diskboot "
                f"block list (found start {start}, count {count}, segment {segment:#x}; "
                f"expected {MKIMAGE_DEFAULT_START}, {self.core_sectors - 1}, "
                f"{CORE_SEGMENT:#x})")
        second = self.core_img[FIRST_BLOCKLIST - BLOCKLIST_SIZE:FIRST_BLOCKLIST]
        if second != bytes(BLOCKLIST_SIZE):
            raise BootloaderError(f"{directory}/core.img: its diskboot block list is not "
                                  "terminated after the first entry")
        if self.core_sectors > CORE_MAX_SECTORS:
            raise BootloaderError(f"{directory}/core.img has {self.core_sectors} sectors; "
                                  f"GRUB loads at most {CORE_MAX_SECTORS} under BIOS")


@dataclass(frozen=True)
class GptPartition:
    number: int  # 1-based: the entry's index + 1, as Linux and GRUB's gptN count
    type_guid: str  # upper case, as layout.TYPE_GUIDS
    first_lba: int
    last_lba: int  # inclusive

    @property
    def sectors(self) -> int:
        return self.last_lba - self.first_lba + 1


def read_at(fd: int, offset: int, size: int, disk: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise BootloaderError(f"{disk}: short read at byte {offset} (the disk ends at "
                              f"{os.lseek(fd, 0, os.SEEK_END)})")
    return data


def write_at(fd: int, offset: int, data: bytes, disk: str) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise BootloaderError(f"{disk}: write at byte {offset} failed")
        view = view[written:]
        offset += written


def read_gpt(fd: int, disk: str) -> tuple[bytes, list[GptPartition]]:
    """Sector 0 and the partitions of the primary GPT of the disk open on FD
    (CRCs checked), or BootloaderError saying why it is not a usable GPT disk."""
    return parse_gpt(lambda offset, size: read_at(fd, offset, size, disk),
                     os.lseek(fd, 0, os.SEEK_END), disk)


def parse_gpt(read: Callable[[int, int], bytes], size: int,
              disk: str) -> tuple[bytes, list[GptPartition]]:
    """read_gpt for any disk READ(offset, length) reads bytes of: a device, or the
    virtual disk of an image file (mixboot.diskimage, for `mix viso info`)."""
    if size < 34 * SECTOR:
        raise BootloaderError(f"{disk}: {size} bytes, too small to hold a GPT")
    mbr = read(0, SECTOR)
    types = [mbr[MBR_PART_START + i * MBR_ENTRY_SIZE + MBR_ENTRY_TYPE] for i in range(4)]
    if mbr[BOOT_SIGNATURE_AT:] != BOOT_SIGNATURE or MBR_TYPE_GPT_PROTECTIVE not in types:
        raise BootloaderError(f"{disk}: no GPT (no protective MBR in sector 0); "
                              "partition it as mixboot.layout says first")
    raw = read(GPT_HEADER_LBA * SECTOR, SECTOR)
    if raw[:8] != GPT_SIGNATURE:
        if size >= 2 * 4096 and read(4096, 8) == GPT_SIGNATURE:
            raise BootloaderError(f"{disk}: a GPT for 4096-byte sectors; GRUB's BIOS boot "
                                  "code reads 512-byte sectors only")
        raise BootloaderError(f"{disk}: no GPT header at sector 1")
    (_, _, header_size, header_crc, _, my_lba, _, _, _, _, entries_lba, n_entries,
     entry_size, entries_crc) = GPT_HEADER.unpack_from(raw)
    if not GPT_HEADER.size <= header_size <= SECTOR:
        raise BootloaderError(f"{disk}: GPT header size {header_size} is invalid")
    zeroed = raw[:GPT_HEADER_CRC_AT] + b"\0\0\0\0" + raw[GPT_HEADER_CRC_AT + 4:header_size]
    if binascii.crc32(zeroed) != header_crc or my_lba != GPT_HEADER_LBA:
        raise BootloaderError(f"{disk}: the primary GPT header is corrupt (bad CRC32); "
                              "repair the partition table (sfdisk --relocate, gdisk) first")
    if entry_size < GPT_ENTRY.size or entry_size % 8 \
            or n_entries * entry_size > MAX_GPT_ENTRIES_BYTES:
        raise BootloaderError(f"{disk}: GPT entry array of {n_entries} x {entry_size} bytes "
                              "is invalid")
    table = read(entries_lba * SECTOR, n_entries * entry_size)
    if binascii.crc32(table) != entries_crc:
        raise BootloaderError(f"{disk}: the GPT partition entries are corrupt (bad CRC32)")
    parts = []
    for i in range(n_entries):
        type_le, _, first, last, _, _ = GPT_ENTRY.unpack_from(table, i * entry_size)
        if type_le != bytes(16):
            parts.append(GptPartition(i + 1, str(uuid.UUID(bytes_le=type_le)).upper(),
                                      first, last))
    return mbr, parts


def boot_sector(boot_img: bytes, disk_sector0: bytes, core_lba: int) -> bytes:
    """boot.img as grub-bios-setup writes it to a hard disk's sector 0."""
    out = bytearray(boot_img)
    out[BOOT_BPB_START:BOOT_BPB_END] = disk_sector0[BOOT_BPB_START:BOOT_BPB_END]
    out[BOOT_KERNEL_SECTOR:BOOT_KERNEL_SECTOR + 8] = struct.pack("<Q", core_lba)
    out[BOOT_DRIVE] = BOOT_DRIVE_FROM_BIOS
    out[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = bytes((NOP, NOP))
    out[MBR_KEEP_START:MBR_KEEP_END] = disk_sector0[MBR_KEEP_START:MBR_KEEP_END]
    return bytes(out)


def placed_core(core_img: bytes, first_lba: int) -> bytes:
    """core.img, padded to whole sectors, with its block list naming the sectors
    after FIRST_LBA: one contiguous run, then the terminating empty entry."""
    sectors = -(-len(core_img) // SECTOR)
    out = bytearray(core_img.ljust(sectors * SECTOR, b"\0"))
    # (Kit.check made sure mkimage's list is one entry and a terminator.)
    BLOCKLIST.pack_into(out, FIRST_BLOCKLIST, first_lba + 1, sectors - 1, CORE_SEGMENT)
    BLOCKLIST.pack_into(out, FIRST_BLOCKLIST - BLOCKLIST_SIZE, 0, 0, 0)
    return bytes(out)


@dataclass(frozen=True)
class Plan:
    """What install() writes, decided before anything is written."""

    core_lba: int
    core: bytes  # placed at core_lba
    sector0: bytes
    efi_source: Path
    efi_target: Path


def plan(disk: str, fd: int, kit: Kit, esp_mount: Path) -> Plan:
    sector0, parts = read_gpt(fd, disk)
    bios = next((p for p in parts if p.number == layout.BIOS_BOOT), None)
    want = layout.TYPE_GUIDS[layout.BIOS_BOOT]
    if bios is None:
        raise BootloaderError(f"{disk}: no partition {layout.BIOS_BOOT}; MixOS disks carry "
                              f"the BIOS boot partition (type {want}) there")
    if bios.type_guid != want:
        raise BootloaderError(f"{disk}: partition {layout.BIOS_BOOT} has type "
                              f"{bios.type_guid}, not BIOS boot ({want}); core.img would "
                              "overwrite whatever it holds")
    size = os.lseek(fd, 0, os.SEEK_END)
    if bios.first_lba < 2 or bios.last_lba < bios.first_lba or \
            (bios.last_lba + 1) * SECTOR > size:
        raise BootloaderError(f"{disk}: partition {layout.BIOS_BOOT} spans sectors "
                              f"{bios.first_lba}..{bios.last_lba}, outside the disk")
    if kit.core_sectors > bios.sectors:
        raise BootloaderError(f"{disk}: partition {layout.BIOS_BOOT} has {bios.sectors} "
                              f"sectors; core.img needs {kit.core_sectors}. Make it "
                              f"{layout.BIOS_BOOT_MIB} MiB, as mixboot.layout says")
    if not esp_mount.is_dir():
        raise BootloaderError(f"{esp_mount}: not a directory; mount the ESP "
                              f"(partition {layout.ESP} of {disk}) there")
    return Plan(core_lba=bios.first_lba, core=placed_core(kit.core_img, bios.first_lba),
                sector0=boot_sector(kit.boot_img, sector0, bios.first_lba),
                efi_source=kit.efi, efi_target=esp_mount / layout.EFI_LOADER)


def install(disk: str | Path, *, kit: Path, esp_mount: Path) -> None:
    """Make DISK (a block device or an image file with a MixOS GPT) boot GRUB under
    BIOS and UEFI, from the kit directory KIT; the ESP is mounted at ESP_MOUNT.
    Raises BootloaderError, having written nothing, when a check fails."""
    name = str(disk)
    images = Kit.load(kit)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise BootloaderError(f"{name}: cannot open for writing: {e.strerror}") from e
    try:
        p = plan(name, fd, images, esp_mount)
        write_at(fd, p.core_lba * SECTOR, p.core, name)
        os.fsync(fd)
        write_at(fd, 0, p.sector0, name)
        os.fsync(fd)
    finally:
        os.close(fd)
    durable.copy(p.efi_source, p.efi_target)
