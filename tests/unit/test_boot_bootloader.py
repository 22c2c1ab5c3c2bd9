"""The GRUB kit (mixbuild.images.bootloader) and its installer (mixboot.bootloader) on
GPT image files made with sfdisk: the fields grub-bios-setup would patch, and
refusals that leave the disk untouched."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from mixboot import bootloader as bl
from mixboot import layout

needs_sfdisk = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="needs sfdisk")
P1_LBA = 2048  # the first partition at 1 MiB, as sfdisk aligns it


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit as `make bootloader` builds it (into a temporary directory)."""
    if shutil.which("grub-mkimage") is None or not Path("/usr/lib/grub/i386-pc").is_dir():
        pytest.skip("needs grub-mkimage with grub-pc-bin and grub-efi-amd64-bin")
    from mixbuild.images import bootloader as stage

    return stage.build(tmp_path_factory.mktemp("kit") / "grub")


def make_disk(path: Path, *, bios_size: str = "1MiB",
              bios_type: str = layout.TYPE_GUIDS[layout.BIOS_BOOT]) -> Path:
    path.write_bytes(b"")
    with path.open("r+b") as f:
        f.truncate(64 << 20)
    script = (f"label: gpt\n"
              f"size={bios_size}, type={bios_type}\n"
              f"size=32MiB, type={layout.TYPE_GUIDS[layout.ESP]}\n"
              f"type={layout.TYPE_GUIDS[layout.ROOT]}\n")
    subprocess.run(["sfdisk", "--quiet", str(path)], input=script, text=True, check=True,
                   capture_output=True)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_sfdisk
def test_install_points_boot_sector_at_partition_1_and_keeps_partition_table(
        tmp_path: Path, kit: Path) -> None:
    disk = make_disk(tmp_path / "disk.img")
    before = disk.read_bytes()[:bl.SECTOR]
    esp = tmp_path / "esp"
    esp.mkdir()
    bl.install(disk, kit=kit, esp_mount=esp)

    data = disk.read_bytes()
    boot_img = (kit / "boot.img").read_bytes()
    sector0 = data[:bl.SECTOR]
    assert sector0[bl.MBR_KEEP_START:bl.MBR_KEEP_END] == before[bl.MBR_KEEP_START:bl.MBR_KEEP_END]
    assert sector0[bl.BOOT_SIGNATURE_AT:] == b"\x55\xaa"
    assert struct.unpack_from("<Q", sector0, bl.BOOT_KERNEL_SECTOR)[0] == P1_LBA
    assert sector0[bl.BOOT_DRIVE] == 0xFF
    assert sector0[bl.BOOT_DRIVE_CHECK:bl.BOOT_DRIVE_CHECK + 2] == b"\x90\x90"
    # Everything else is boot.img's code, byte for byte.
    patched = {*range(bl.BOOT_BPB_START, bl.BOOT_BPB_END), *range(0x5C, 0x64),
               bl.BOOT_DRIVE_CHECK, bl.BOOT_DRIVE_CHECK + 1,
               *range(bl.MBR_KEEP_START, bl.MBR_KEEP_END)}
    assert [i for i in range(bl.SECTOR) if i not in patched and sector0[i] != boot_img[i]] == []

    core_img = (kit / "core.img").read_bytes()
    sectors = -(-len(core_img) // bl.SECTOR)
    core = data[P1_LBA * bl.SECTOR:(P1_LBA + sectors) * bl.SECTOR]
    assert bl.BLOCKLIST.unpack_from(core, bl.FIRST_BLOCKLIST) == (P1_LBA + 1, sectors - 1, 0x820)
    assert bl.BLOCKLIST.unpack_from(core, bl.FIRST_BLOCKLIST - bl.BLOCKLIST_SIZE) == (0, 0, 0)
    assert core[bl.SECTOR:len(core_img)] == core_img[bl.SECTOR:]
    assert core[:bl.FIRST_BLOCKLIST - bl.BLOCKLIST_SIZE] == \
        core_img[:bl.FIRST_BLOCKLIST - bl.BLOCKLIST_SIZE]
    assert (esp / layout.EFI_LOADER).read_bytes() == (kit / "BOOTX64.EFI").read_bytes()


@needs_sfdisk
def test_install_refuses_too_small_bios_boot_partition_and_writes_nothing(
        tmp_path: Path, kit: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", bios_size="64KiB")
    before = digest(disk)
    esp = tmp_path / "esp"
    esp.mkdir()
    with pytest.raises(bl.BootloaderError, match=r"disk\.img: partition 1 has 128 sectors; "
                                                 r"core\.img needs \d+"):
        bl.install(disk, kit=kit, esp_mount=esp)
    assert digest(disk) == before
    assert list(esp.iterdir()) == []


@needs_sfdisk
def test_install_refuses_partition_1_that_is_not_bios_boot(tmp_path: Path, kit: Path) -> None:
    disk = make_disk(tmp_path / "disk.img", bios_type=layout.TYPE_GUIDS[layout.DATA])
    before = digest(disk)
    with pytest.raises(bl.BootloaderError, match="partition 1 has type 0FC63DAF"):
        bl.install(disk, kit=kit, esp_mount=tmp_path)
    assert digest(disk) == before


def test_install_refuses_disk_without_gpt(tmp_path: Path, kit: Path) -> None:
    disk = tmp_path / "blank.img"
    disk.write_bytes(bytes(1 << 20))
    with pytest.raises(bl.BootloaderError, match=r"blank\.img: no GPT"):
        bl.install(disk, kit=kit, esp_mount=tmp_path)
    assert disk.read_bytes() == bytes(1 << 20)


@needs_sfdisk
def test_install_refuses_corrupt_gpt_header(tmp_path: Path, kit: Path) -> None:
    disk = make_disk(tmp_path / "disk.img")
    with disk.open("r+b") as f:
        f.seek(bl.SECTOR + 0x28)  # first usable LBA, covered by the header CRC
        f.write(b"\x07")
    before = digest(disk)
    with pytest.raises(bl.BootloaderError, match="GPT header is corrupt"):
        bl.install(disk, kit=kit, esp_mount=tmp_path)
    assert digest(disk) == before


@needs_sfdisk
def test_install_refuses_missing_esp_mount_before_writing(tmp_path: Path, kit: Path) -> None:
    disk = make_disk(tmp_path / "disk.img")
    before = digest(disk)
    with pytest.raises(bl.BootloaderError, match="mount the ESP"):
        bl.install(disk, kit=kit, esp_mount=tmp_path / "nowhere")
    assert digest(disk) == before


def test_kit_is_reproducible_cached_and_fits_partition_1(tmp_path: Path, kit: Path) -> None:
    from mixbuild.images import bootloader as stage

    again = stage.build(tmp_path / "grub")
    for name in ("boot.img", "core.img", "BOOTX64.EFI"):
        assert (again / name).read_bytes() == (kit / name).read_bytes(), name
    mtime = (again / "core.img").stat().st_mtime_ns
    stage.build(tmp_path / "grub")  # inputs unchanged: nothing rebuilt
    assert (again / "core.img").stat().st_mtime_ns == mtime
    core = (kit / "core.img").stat().st_size
    assert core <= bl.CORE_MAX_SECTORS * bl.SECTOR < layout.BIOS_BOOT_MIB << 20
    assert bl.Kit.load(kit).core_sectors * bl.SECTOR >= core


def test_kit_that_is_not_grub_is_refused(tmp_path: Path) -> None:
    for name in ("boot.img", "core.img", "BOOTX64.EFI"):
        (tmp_path / name).write_bytes(bytes(4096))
    with pytest.raises(bl.BootloaderError, match="boot.img is not GRUB 2's i386-pc boot.img"):
        bl.Kit.load(tmp_path)
    (tmp_path / "missing").mkdir()
    with pytest.raises(bl.BootloaderError, match="make bootloader"):
        bl.Kit.load(tmp_path / "missing")


def test_block_list_names_the_sectors_after_the_first() -> None:
    core = bytearray(3 * bl.SECTOR + 100)  # 4 sectors once padded
    bl.BLOCKLIST.pack_into(core, bl.FIRST_BLOCKLIST, 2, 3, 0x820)
    placed = bl.placed_core(bytes(core), 4096)
    assert len(placed) == 4 * bl.SECTOR
    assert bl.BLOCKLIST.unpack_from(placed, bl.FIRST_BLOCKLIST) == (4097, 3, 0x820)
