"""The initramfs image and the shell scripts of the boot path (no VM needed)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from mixbuild.common import PROJECT
from mixbuild.images import initramfs

BUSYBOX = "busybox"  # the host's (busybox-static is a build dependency)
INIT_D = PROJECT / "packages" / "mixos-init" / "files" / "etc" / "init.d"
CLOUD = PROJECT / "packages" / "mixos-cloud" / "files"
SCRIPTS = [PROJECT / "initramfs" / "init", *sorted(INIT_D.iterdir()),
           CLOUD / "S25cloud", CLOUD / "S92cloud-final",
           PROJECT / "packages" / "mixos-init" / "files" / "usr" / "share" / "udhcpc"
           / "default.script"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_boot_scripts_parse_with_busybox_sh(script: Path) -> None:
    proc = subprocess.run([BUSYBOX, "sh", "-n", str(script)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_initramfs_is_reproducible_and_holds_init_busybox_and_console(tmp_path: Path) -> None:
    a = initramfs.build(tmp_path / "a.img")
    b = initramfs.build(tmp_path / "b.img")
    assert a.read_bytes() == b.read_bytes()
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=gzip.decompress(a.read_bytes()),
                             capture_output=True, check=True).stdout.decode().splitlines()
    names = {line.split()[-1] for line in listing if "->" not in line} | \
        {line.split()[-3] for line in listing if "->" in line}
    assert {"init", "bin/busybox", "bin/sh", "bin/switch_root", "bin/findfs",
            "dev/console", "newroot"} <= names
    init = next(line for line in listing if line.endswith(" init"))
    assert init.startswith("-rwxr-xr-x")
    assert all(line.split()[2:4] == ["root", "root"] for line in listing)


def test_overlay_tree_is_added_to_the_archive(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc" / "modules-boot").write_text("virtio_blk\n")
    img = initramfs.build(tmp_path / "o.img", overlay=extra)
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=gzip.decompress(img.read_bytes()),
                             capture_output=True, check=True).stdout.decode().split()
    assert "etc/modules-boot" in listing and listing.count("etc") == 1
