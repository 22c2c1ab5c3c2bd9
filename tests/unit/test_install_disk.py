"""The installer's disk checks refuse, before writing anything: a missing disk, a
partition, one too small, one that holds data (unless wipe: true), the medium the
system booted from, and a disk with something mounted."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixinstall import disk
from mixinstall.steps import InstallError

MIB = 1024 * 1024


def image(path: Path, mib: int, head: bytes = b"") -> Path:
    with path.open("wb") as f:
        f.truncate(mib * MIB)
        f.write(head)
    return path


def test_missing_disk(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="does not exist"):
        disk.check_target(str(tmp_path / "vdz"), need_mib=0, wipe=False)


def test_a_plain_file_is_not_a_disk(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="not a block device"):
        disk.check_target(str(image(tmp_path / "f", 1)), need_mib=0, wipe=False)


def test_too_small(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="is 100 MiB; this installation needs at least 300"):
        disk.check_target(str(image(tmp_path / "f", 100)), need_mib=300, wipe=False,
                          allow_file=True)


def test_data_is_refused_without_wipe_and_the_file_is_unchanged(tmp_path: Path) -> None:
    mbr = bytes(510) + b"\x55\xaa"
    f = image(tmp_path / "f", 64, mbr)
    before = f.read_bytes()
    with pytest.raises(InstallError, match="holds data: it has a partition table.*wipe: true"):
        disk.check_target(str(f), need_mib=0, wipe=False, allow_file=True)
    assert f.read_bytes() == before
    assert disk.check_target(str(f), need_mib=0, wipe=True, allow_file=True).size_mib == 64


def test_any_nonzero_byte_in_the_first_mib_is_data(tmp_path: Path) -> None:
    f = image(tmp_path / "f", 8)
    assert disk.holds_data(str(f)) is None
    with f.open("r+b") as h:
        h.seek(700_000)
        h.write(b"x")
    assert "not blank" in (disk.holds_data(str(f)) or "")


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root")
    f = image(tmp_path / "disk.img", 64)
    subprocess.run(["sfdisk", "--quiet", str(f)], input="label: gpt\n,8MiB\n", text=True,
                   check=True, capture_output=True)
    dev = subprocess.run(["losetup", "--find", "--show", "--partscan", str(f)],
                         capture_output=True, text=True, check=True).stdout.strip()
    # Some kernels do not scan a loop device's partitions by themselves.
    subprocess.run(["partx", "--update", dev], check=False, capture_output=True)
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=False)


def test_the_boot_medium_is_refused(loop: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "boot.env"
    env.write_text(f"MIXOS_MEDIUM={loop}\nMIXOS_VRAM=off\n")
    monkeypatch.setattr(disk, "BOOT_ENV", env)
    with pytest.raises(InstallError, match="the medium this system booted from"):
        disk.check_target(loop, need_mib=0, wipe=True)


def test_a_partition_is_refused(loop: str) -> None:
    part = f"{loop}p1"
    if not os.path.exists(part):
        pytest.skip("the kernel made no partition device for the loop device")
    with pytest.raises(InstallError, match="is a partition"):
        disk.check_target(part, need_mib=0, wipe=True)


def test_a_disk_with_a_mounted_file_system_is_refused(loop: str, tmp_path: Path) -> None:
    part = f"{loop}p1"
    if not os.path.exists(part):
        pytest.skip("the kernel made no partition device for the loop device")
    subprocess.run(["mkfs.ext4", "-q", part], check=True, capture_output=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", part, str(mnt)], check=True)
    try:
        with pytest.raises(InstallError, match="mounted file systems"):
            disk.check_target(loop, need_mib=0, wipe=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
