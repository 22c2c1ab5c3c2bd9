"""The partition layout of a MixOS disk (installed system, VISO): one owner.

GPT, with fixed partition *numbers* whatever their order on the disk, so that
prebuilt boot loader images can name the root partition without knowing the
disk (GRUB's prefix "(,gpt3)/boot/grub": partition 3 of the disk GRUB was
loaded from, under BIOS and UEFI alike):

    1  BIOS boot    GRUB's core image for BIOS (SeaBIOS) boots, no file system
    2  EFI system   FAT, /EFI/BOOT/BOOTX64.EFI for UEFI (OVMF) boots
    3  root         ext4, the whole system including /boot
    4  swap         optional
    5  data         optional, mounted where install.yaml says (default /srv)

An SDISK (a disk carrying several MixOS images and a menu to pick one) keeps
partitions 1 and 2 and puts its data partition at number 3, so that the same
GRUB images (prefix "(,gpt3)/boot/grub") boot it:

    3  SDISK data   ext4 labelled MIXOS-SDISK: /images/*.iso, /boot/grub/
                    (grub.cfg written by mixboot.sdisk, grubenv). ext4 rather
                    than FAT: its journal keeps `mix sdisk add` power-cut safe,
                    and Linux build hosts mount it without FAT support
"""

from __future__ import annotations

from dataclasses import dataclass

BIOS_BOOT = 1
ESP = 2
ROOT = 3
SWAP = 4
DATA = 5

# GPT partition type GUIDs (as sfdisk and the UEFI specification name them).
TYPE_GUIDS = {
    BIOS_BOOT: "21686148-6449-6E6F-744E-656564454649",
    ESP: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    ROOT: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # Linux root (x86-64)
    SWAP: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    DATA: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux file system data
}
NAMES = {BIOS_BOOT: "bios", ESP: "esp", ROOT: "root", SWAP: "swap", DATA: "data"}
# Partition labels (GPT names) and file system labels.
PART_LABELS = {BIOS_BOOT: "mixos-bios", ESP: "mixos-esp", ROOT: "mixos-root",
               SWAP: "mixos-swap", DATA: "mixos-data"}
FS_LABELS = {ESP: "MIXOS-ESP", ROOT: "mixos-root", DATA: "mixos-data"}

# The SDISK's data partition: its number (GRUB's prefix names it like the root
# of an installed disk) and file system label (the initramfs finds it by it).
SDISK_DATA = ROOT
SDISK_LABEL = "MIXOS-SDISK"
SDISK_IMAGES = "images"  # the directory of the images on it

# Sizes (MiB) of the fixed partitions and the smallest root that holds MixOS
# with room for one kernel upgrade.
BIOS_BOOT_MIB = 1
ESP_MIB = 32
MIN_ROOT_MIB = 256
# Where partitions start: 1 MiB alignment, as every current partitioning tool does.
ALIGN_MIB = 1

# Where GRUB finds its configuration: relative to the boot disk, partition ROOT.
GRUB_PREFIX = f"(,gpt{ROOT})/boot/grub"
# The EFI boot loader's path on the ESP (the removable-media path: no NVRAM entry
# is needed, so a copied disk or VISO boots on any UEFI machine).
EFI_LOADER = "EFI/BOOT/BOOTX64.EFI"


@dataclass(frozen=True)
class Partition:
    number: int  # one of BIOS_BOOT, ESP, ROOT, SWAP, DATA
    size_mib: int | None  # None: the rest of the disk
    filesystem: str | None = None  # "vfat", "ext4", "xfs", "swap" or None

    @property
    def name(self) -> str:
        return NAMES[self.number]


def partition_device(disk: str, number: int) -> str:
    """/dev/vda + 3 -> /dev/vda3; /dev/nvme0n1 or /dev/loop0 + 3 -> ...p3."""
    return f"{disk}p{number}" if disk[-1:].isdigit() else f"{disk}{number}"
