"""Can this kernel boot this initramfs and root image? Checked at build time.

A mismatch here (a squashfs compressor or xz filter the kernel cannot decode, an
initramfs compression it cannot unpack, a missing driver for the CD-ROM) would
otherwise surface only as a kernel panic in a VM. The ISO stage runs these
checks against the kernel's .config (artifacts/kernel/config) and refuses to
build an image that cannot boot, naming the option to enable.
"""

from __future__ import annotations

import struct
from pathlib import Path

# Everything the MixOS boot path needs built into the kernel, and why.
BOOT_OPTIONS: dict[str, str] = {
    "BLK_DEV_INITRD": "the initramfs",
    "DEVTMPFS": "/dev in the initramfs",
    "TMPFS": "/run and the writable overlay layer",
    "SQUASHFS": "the root image",
    "OVERLAY_FS": "the writable root",
    "BLK_DEV_LOOP": "mounting the root image file",
    "ISO9660_FS": "the ISO medium",
    "BLK_DEV_SR": "CD-ROM drives",
    "SERIAL_8250_CONSOLE": "the serial console (login prompt, tests)",
    "VIRTIO_PCI": "virtio devices",
    "VIRTIO_NET": "the network (DHCP on the first virtio NIC)",
    "PACKET": "udhcpc's raw socket",
    "VFAT_FS": "NoCloud seed disks",
    "ACPI": "clean poweroff",
}
# At least one of these: the CD-ROM controller of QEMU's q35 (AHCI) or pc (PIIX).
CDROM_CONTROLLERS = ("SATA_AHCI", "ATA_PIIX")

# squashfs superblock compression ids -> kernel option
SQUASHFS_COMPRESSORS = {1: ("gzip", "SQUASHFS_ZLIB"), 2: ("lzma", "SQUASHFS_XZ"),
                        3: ("lzo", "SQUASHFS_LZO"), 4: ("xz", "SQUASHFS_XZ"),
                        5: ("lz4", "SQUASHFS_LZ4"), 6: ("zstd", "SQUASHFS_ZSTD")}
# xz "executable filters" bits in squashfs's xz compressor options -> kernel option
XZ_FILTERS = {1: ("x86", "XZ_DEC_X86"), 2: ("powerpc", "XZ_DEC_POWERPC"),
              4: ("ia64", "XZ_DEC_IA64"), 8: ("arm", "XZ_DEC_ARM"),
              16: ("armthumb", "XZ_DEC_ARMTHUMB"), 32: ("sparc", "XZ_DEC_SPARC")}
SQUASHFS_MAGIC = 0x73717368
SQUASHFS_COMP_OPT_FLAG = 0x0400
INITRD_MAGIC = {b"\x1f\x8b": ("gzip", "RD_GZIP"), b"\xfd7zXZ": ("xz", "RD_XZ"),
                b"\x28\xb5\x2f\xfd": ("zstd", "RD_ZSTD"), b"\x02\x21\x4c\x18": ("lz4", "RD_LZ4"),
                b"070701": ("uncompressed cpio", "BLK_DEV_INITRD")}


def read_config(path: Path) -> set[str]:
    """The options set to y in a kernel .config (without the CONFIG_ prefix)."""
    enabled = set()
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_") and line.endswith("=y"):
            enabled.add(line[len("CONFIG_"):-2])
    return enabled


def squashfs_needs(image: Path) -> list[tuple[str, str]]:
    """(what, option) pairs the kernel needs to read squashfs IMAGE."""
    with image.open("rb") as f:
        sb = f.read(96)
        if len(sb) < 96 or struct.unpack_from("<I", sb, 0)[0] != SQUASHFS_MAGIC:
            raise ValueError(f"{image} is not a squashfs image")
        comp_id, = struct.unpack_from("<H", sb, 20)
        flags, = struct.unpack_from("<H", sb, 24)
        if comp_id not in SQUASHFS_COMPRESSORS:
            raise ValueError(f"{image}: unknown squashfs compressor id {comp_id}")
        name, option = SQUASHFS_COMPRESSORS[comp_id]
        needs = [(f"squashfs compressed with {name}", option)]
        if comp_id == 4 and flags & SQUASHFS_COMP_OPT_FLAG:
            # Compressor options follow the superblock as one metadata block:
            # a 2-byte header (bit 15: stored uncompressed), then for xz
            # dictionary_size (u32) and executable_filters (u32).
            header, = struct.unpack("<H", f.read(2))
            if header & 0x8000:
                _, filters = struct.unpack("<II", f.read(8))
                for bit, (fname, fopt) in XZ_FILTERS.items():
                    if filters & bit:
                        needs.append((f"squashfs xz with the {fname} BCJ filter", fopt))
    return needs


def initrd_needs(initrd: Path) -> list[tuple[str, str]]:
    head = initrd.read_bytes()[:6]
    for magic, (name, option) in INITRD_MAGIC.items():
        if head.startswith(magic):
            return [(f"initramfs compressed with {name}", option)]
    raise ValueError(f"{initrd}: unknown initramfs compression (first bytes {head.hex()})")


def problems(config: set[str], *, initrd: Path, squashfs: Path) -> list[str]:
    """What the kernel with CONFIG lacks to boot INITRD and SQUASHFS; empty if nothing."""
    needs = [(why, opt) for opt, why in BOOT_OPTIONS.items()]
    needs += initrd_needs(initrd) + squashfs_needs(squashfs)
    found = [f"CONFIG_{opt}=y ({why})" for why, opt in needs if opt not in config]
    if not any(c in config for c in CDROM_CONTROLLERS):
        found.append("CONFIG_SATA_AHCI=y or CONFIG_ATA_PIIX=y (a CD-ROM controller)")
    return found
