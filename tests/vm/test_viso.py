"""The VISO: MixOS installed on a virtual disk (make viso), booted from its disk
alone with the seed's options, under SeaBIOS and OVMF; what is written survives a
reboot; the root grows after `qemu-img resize`; and kernel upgrades with `mix
upgrade`: the new kernel boots, a kernel that cannot boot falls back to the
previous one by itself, and a VM killed in the middle of an upgrade still boots.

Each test boots its own qcow2 overlay of the VISO (the image stays as built).
Keys come from the NoCloud seed, as for any cloud image.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Guest, StartMachine, overlay
from release import make_release, repo_disk

from mixbuild.common import ARTIFACTS
from mixbuild.vm.qemu import Drive, Machine

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

REPO = ARTIFACTS / "repo"
REPO_MOUNT = "mkdir -p /mnt/repo2 && mount -o ro /dev/vdc /mnt/repo2"
UPGRADE = f"{REPO_MOUNT} && mix --repo file:///mnt/repo2/repo -y upgrade"


def viso_machine(disk: Path, seed: Path, *, uefi: bool = False,
                 extra_disks: tuple[Path, ...] = ()) -> Callable[[int, str], Machine]:
    return lambda port, accel: Machine(accel=accel, drives=(Drive(disk),), ssh_port=port,
                                       disks=(seed, *extra_disks), uefi=uefi)


def status(g: Guest) -> dict[str, object]:
    return dict(json.loads(g.sh("mixos-boot status")))


def running_kernel(g: Guest) -> str:
    match = re.search(r"mixos\.kernel=(\S+)", g.sh("cat /proc/cmdline"))
    assert match, "the booted entry names no kernel (mixos.kernel=)"
    return match.group(1)


def wait_marked_good(g: Guest, timeout: float = 60) -> dict[str, object]:
    """S90bootok runs among the services, after the login prompt."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(g)
        if st["good"] == st["running"] or time.monotonic() > deadline:
            return st
        time.sleep(1)


@pytest.fixture(scope="module")
def linux_version() -> str:
    index = json.loads((REPO / "index.json").read_text())
    return next(str(p["version"]) for p in index["packages"] if p["name"] == "linux")


@pytest.fixture(scope="module")
def releases(vm_workdir: Path, linux_version: str) -> dict[str, Path]:
    """Repository disks: 'good' bumps linux and mixos-base; 'broken' bumps linux
    again with an initramfs the kernel cannot unpack."""
    base = json.loads((REPO / "index.json").read_text())
    mixos_base = next(str(p["version"]) for p in base["packages"] if p["name"] == "mixos-base")
    good = make_release(REPO, vm_workdir / "release-good",
                        {"linux": f"{linux_version}.1", "mixos-base": f"{mixos_base}.1"})
    broken = make_release(good, vm_workdir / "release-broken", {"linux": f"{linux_version}.2"},
                          broken_initramfs=True)
    return {"good": repo_disk(good, vm_workdir / "release-good.img"),
            "broken": repo_disk(broken, vm_workdir / "release-broken.img"),
            "good_version": Path(f"{linux_version}.1"), "broken_version": Path(f"{linux_version}.2")}


def test_viso_is_a_small_compressed_qcow2(viso_image: Path, boot_metrics: dict[str, object]) -> None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(viso_image)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    size_mb = viso_image.stat().st_size / 1e6
    boot_metrics["viso_file_mb"] = round(size_mb, 1)
    boot_metrics["viso_virtual_mib"] = info["virtual-size"] // 2**20
    assert size_mb <= 40, f"the VISO is {size_mb:.1f} MB (target 40)"


def test_viso_boots_persists_and_keeps_packages(viso_image: Path, vm_workdir: Path,
                                                nocloud_seed: Path, start_machine: StartMachine,
                                                boot_metrics: dict[str, object]) -> None:
    disk = overlay(viso_image, vm_workdir / "viso-persist.qcow2")
    repo = repo_disk(REPO, vm_workdir / "viso-repo.img")
    machine = viso_machine(disk, nocloud_seed, extra_disks=(repo,))
    g = start_machine(machine)
    boot_metrics["viso_login_prompt_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["viso_ssh_ready_s"] = round(g.ssh_seconds or 0, 2)
    env = g.sh("cat /run/mixos/boot.env")
    assert "MIXOS_ROOT=/dev/vda3" in env, env
    assert g.sh("findmnt -no FSTYPE / 2>/dev/null || awk '$2==\"/\"{t=$3} END{print t}' "
                "/proc/mounts").strip() == "ext4"
    first_host_key = g.sh("cat /etc/ssh/ssh_host_ed25519_key.pub")
    g.sh("echo kept > /root/persist.txt")
    g.sh("mkdir -p /mnt/r && mount -o ro /dev/vdc /mnt/r && "
         "mix --repo file:///mnt/r/repo -y install nginx && umount /mnt/r", timeout=300)
    assert g.poweroff() == 0
    g = start_machine(machine, name="viso-persist-2")
    assert g.sh("cat /root/persist.txt").strip() == "kept"
    assert "nginx" in g.sh("mix list --installed")
    g.sh("mix verify")  # exit 0: every installed file as its package says
    assert g.sh("cat /etc/ssh/ssh_host_ed25519_key.pub") == first_host_key


def test_viso_root_grows_after_resize(viso_image: Path, vm_workdir: Path, nocloud_seed: Path,
                                      start_machine: StartMachine) -> None:
    disk = overlay(viso_image, vm_workdir / "viso-grow.qcow2", grow_mib=1024)
    g = start_machine(viso_machine(disk, nocloud_seed))
    assert "growroot: /dev/vda grew" in g.vm.console()
    part = int(g.sh("cat /sys/class/block/vda3/size")) * 512 // 2**20
    disk_mib = int(g.sh("cat /sys/class/block/vda/size")) * 512 // 2**20
    fs_kib = int(g.sh("df -k / | awk 'NR==2{print $2}'"))
    assert disk_mib == 2048
    assert part >= disk_mib - 40, f"root partition {part} MiB on a {disk_mib} MiB disk"
    assert fs_kib >= (part - 100) * 1024, f"file system {fs_kib} KiB, partition {part} MiB"


def test_viso_boots_under_ovmf(viso_image: Path, vm_workdir: Path, nocloud_seed: Path,
                               start_machine: StartMachine,
                               boot_metrics: dict[str, object]) -> None:
    disk = overlay(viso_image, vm_workdir / "viso-ovmf.qcow2")
    g = start_machine(viso_machine(disk, nocloud_seed, uefi=True))
    boot_metrics["viso_ovmf_login_prompt_s"] = round(g.login_seconds or 0, 2)
    assert g.sh("test -d /sys/firmware/efi && echo efi").strip() == "efi"
    assert "MIXOS_ROOT=/dev/vda3" in g.sh("cat /run/mixos/boot.env")


def test_kernel_upgrade_boots_the_new_kernel_and_falls_back_from_a_broken_one(
        viso_image: Path, vm_workdir: Path, nocloud_seed: Path, start_machine: StartMachine,
        releases: dict[str, Path], linux_version: str,
        boot_metrics: dict[str, object]) -> None:
    new, broken = str(releases["good_version"]), str(releases["broken_version"])
    disk = overlay(viso_image, vm_workdir / "viso-upgrade.qcow2")
    g = start_machine(viso_machine(disk, nocloud_seed, extra_disks=(releases["good"],)))
    assert running_kernel(g) == linux_version
    start = time.monotonic()
    g.sh(UPGRADE, timeout=600)
    boot_metrics["viso_kernel_upgrade_s"] = round(time.monotonic() - start, 1)
    st = status(g)
    assert st["trial"] == new and st["good"] == linux_version, st
    assert g.poweroff() == 0

    g = start_machine(viso_machine(disk, nocloud_seed, extra_disks=(releases["broken"],)),
                      name="viso-upgrade-new")
    assert running_kernel(g) == new
    st = wait_marked_good(g)
    assert st["good"] == new and not st["trial"], st
    assert f"{new}" in g.sh("mix list --installed")
    g.sh("mix verify")
    # A kernel that cannot boot: its initramfs is not one.
    g.sh(UPGRADE, timeout=600)
    assert status(g)["trial"] == broken
    assert g.poweroff() == 0

    # The trial boot panics (no root); the kernel reboots at once, and QEMU
    # (-no-reboot) exits: that was the one try.
    failed = start_machine(viso_machine(disk, nocloud_seed), wait_login=False, wait_ssh=False,
                           name="viso-upgrade-broken")
    failed.vm.wait_exit(180)
    assert "Kernel panic" in failed.vm.console() or "VFS" in failed.vm.console()
    # The next boot falls back to the last good kernel by itself.
    g = start_machine(viso_machine(disk, nocloud_seed), name="viso-upgrade-fallback")
    assert running_kernel(g) == new
    st = wait_marked_good(g)
    assert st["good"] == new and not st["trial"], st


def test_killed_upgrade_leaves_a_bootable_consistent_system(
        viso_image: Path, vm_workdir: Path, nocloud_seed: Path, start_machine: StartMachine,
        releases: dict[str, Path], linux_version: str) -> None:
    disk = overlay(viso_image, vm_workdir / "viso-killed.qcow2")
    machine = viso_machine(disk, nocloud_seed, extra_disks=(releases["good"],))
    g = start_machine(machine)
    g.sh(REPO_MOUNT)
    # In the background; QEMU is killed while mix works on the kernel package.
    # In the background (setsid: it outlives the SSH session); QEMU is killed as soon
    # as mix has begun to unpack the new kernel package (its directory appears
    # before the transaction commits).
    new = releases["good_version"]
    g.ssh("setsid sh -c 'mix --repo file:///mnt/repo2/repo -y upgrade > /root/upgrade.log 2>&1'"
          " < /dev/null > /dev/null 2>&1 &")
    deadline = time.monotonic() + 120
    while g.ssh(f"test -e /usr/lib/linux/{new}", check=False).returncode != 0:
        assert time.monotonic() < deadline, g.ssh("cat /root/upgrade.log", check=False).stdout
        time.sleep(0.1)
    g.vm.kill()
    g = start_machine(machine, name="viso-killed-2")
    # The next command that changes the root completes or undoes the interrupted
    # transaction (read-only ones leave it alone); then every file is as recorded.
    g.sh("mix fix && mix verify", timeout=300)
    assert running_kernel(g) in (linux_version, str(releases["good_version"]))
