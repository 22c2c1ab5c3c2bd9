"""Build-time check that the kernel can boot the initramfs and the root image."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from mixbuild.images import bootcompat

FULL = set(bootcompat.BOOT_OPTIONS) | {"SATA_AHCI", "RD_GZIP", "SQUASHFS_XZ", "SQUASHFS_ZSTD"}


def squashfs(tmp_path: Path, *options: str) -> Path:
    src = tmp_path / "tree"
    src.mkdir(exist_ok=True)
    (src / "hello").write_text("mixos\n" * 1000)
    out = tmp_path / f"root-{'-'.join(o.strip('-') for o in options)}.sqfs"
    subprocess.run(["mksquashfs", str(src), str(out), "-noappend", "-quiet", "-no-progress",
                    *options], check=True, capture_output=True)
    return out


@pytest.fixture
def initrd(tmp_path: Path) -> Path:
    path = tmp_path / "initramfs.img"
    path.write_bytes(gzip.compress(b"070701" + b"0" * 104))
    return path


def test_xz_with_x86_filter_needs_xz_dec_x86(tmp_path: Path, initrd: Path) -> None:
    image = squashfs(tmp_path, "-comp", "xz", "-Xbcj", "x86")
    assert ("squashfs xz with the x86 BCJ filter", "XZ_DEC_X86") in \
        bootcompat.squashfs_needs(image)
    found = bootcompat.problems(FULL, initrd=initrd, squashfs=image)
    assert found == ["CONFIG_XZ_DEC_X86=y (squashfs xz with the x86 BCJ filter)"]
    assert bootcompat.problems(FULL | {"XZ_DEC_X86"}, initrd=initrd, squashfs=image) == []


def test_compressor_must_be_built_in(tmp_path: Path, initrd: Path) -> None:
    image = squashfs(tmp_path, "-comp", "zstd")
    assert bootcompat.problems(FULL, initrd=initrd, squashfs=image) == []
    found = bootcompat.problems(FULL - {"SQUASHFS_ZSTD"}, initrd=initrd, squashfs=image)
    assert found == ["CONFIG_SQUASHFS_ZSTD=y (squashfs compressed with zstd)"]


def test_initramfs_compression_and_boot_drivers_are_checked(tmp_path: Path,
                                                            initrd: Path) -> None:
    image = squashfs(tmp_path, "-comp", "xz")
    found = bootcompat.problems(FULL - {"RD_GZIP", "OVERLAY_FS", "SATA_AHCI"}, initrd=initrd,
                                squashfs=image)
    assert "CONFIG_RD_GZIP=y (initramfs compressed with gzip)" in found
    assert "CONFIG_OVERLAY_FS=y (the writable root)" in found
    assert any("CD-ROM controller" in f for f in found)
    assert bootcompat.problems(FULL - {"SATA_AHCI"} | {"ATA_PIIX"}, initrd=initrd,
                               squashfs=image) == []


def test_read_config_takes_only_built_in_options(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"y\"\n")
    assert bootcompat.read_config(config) == {"A"}


def test_not_a_squashfs_is_an_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x"
    bogus.write_bytes(b"\0" * 200)
    with pytest.raises(ValueError, match="not a squashfs"):
        bootcompat.squashfs_needs(bogus)
