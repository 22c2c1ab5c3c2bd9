"""VRAM on every medium, in a 256 MiB guest: boot with VRAM on from the ISO (its
menu's VRAM entry), the SDISK and the VISO (`mix vram enable`, kept in GRUB's
environment block, then a reboot), unplug the boot disk from the running VM
(QMP device_del), then run commands, write files and install a package from a
repository the host serves. On the VISO the RAM copy's changes are gone after
the next boot from the disk, as docs/boot.md says.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Guest, StartMachine, overlay

from mixbuild.common import ARTIFACTS
from mixbuild.images.iso import project_version
from mixbuild.vm.qemu import Drive, Machine

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

MEMORY_MB = 256
PACKAGE = "nginx"  # in the repository, in neither the live image nor the VISO


def machine(boot: Drive, seed: Path, sockets: Path) -> Callable[[int, str], Machine]:
    return lambda port, accel: Machine(accel=accel, memory_mb=MEMORY_MB, drives=(boot,),
                                       disks=(seed,), ssh_port=port,
                                       monitor=sockets / "hmp", qmp=sockets / "qmp")


def boot_disk(g: Guest) -> str:
    """The boot disk's kernel name (vda, vdb...), from what the initramfs recorded."""
    env = dict(line.split("=", 1) for line in g.sh("cat /run/mixos/boot.env").split("\n")
               if "=" in line)
    dev = env.get("MIXOS_SDISK") or env.get("MIXOS_ROOT") or env["MIXOS_MEDIUM"]
    match = re.fullmatch(r"/dev/(vd[a-z]+)\d*", dev)
    assert match, f"boot device {dev} is not a virtio disk"
    return match.group(1)


def unplug_boot_disk(g: Guest) -> None:
    """device_del the boot disk and wait until the guest has let it go."""
    disk = boot_disk(g)
    g.vm.qmp("device_del", id="boot")
    deadline = time.monotonic() + 30
    while re.search(rf"\b{disk}\b", g.sh("cat /proc/partitions")):
        assert time.monotonic() < deadline, f"the guest still shows {disk} 30 s after device_del"
        time.sleep(0.5)


def exercise(g: Guest, repo: str, metrics: dict[str, object], medium: str) -> None:
    """What a system in RAM must still do once its disk is gone."""
    assert g.sh("echo written-in-ram > /root/vram-file && cat /root/vram-file") \
        == "written-in-ram\n"
    assert "MixOS" in g.sh("uname -a; cat /etc/os-release; ls /usr/bin | wc -l")
    g.sh(f"mix --repo {repo} -y install {PACKAGE}", timeout=300)
    assert "nginx version" in g.ssh("nginx -v").stderr
    st = json.loads(g.sh("mix --json vram status"))
    assert st["in_effect"] == "on" and st["medium_needed"] is False and st["medium"] == medium
    metrics[f"vram_{medium}_mem_used_mib"] = round(
        (int(st["mem_total"]) - int(st["mem_available"])) / 2**20, 1)
    metrics[f"vram_{medium}_copied_mib"] = round(int(st["copied_bytes"]) / 2**20, 1)


def copy_seconds(g: Guest) -> float:
    start = g.vm.arrival_of("VRAM: copying the")
    end = g.vm.arrival_of(r"VRAM=on\); starting|mounted \(VRAM=on\)")
    assert start is not None and end is not None, g.vm.tail()
    return round(end - start, 2)


def test_vram_from_the_iso(start_machine: StartMachine,
                           nocloud_seed: Path, sockets_dir: Path, http_repo: str,
                           boot_metrics: dict[str, object]) -> None:
    iso = ARTIFACTS / f"mixos-{project_version()}.iso"
    g = start_machine(machine(Drive(iso, "raw", readonly=True, ident="boot"), nocloud_seed,
                              sockets_dir), wait_login=False, wait_ssh=False)
    g.vm.open_boot_menu()
    g.vm.sendkey("down")  # normal, VRAM, rescue
    g.vm.sendkey("ret")
    g.vm.wait_for("VRAM: copying the root image", 60)
    g.wait_login()
    g.wait_ssh()
    boot_metrics["vram_iso_login_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["vram_iso_copy_s"] = copy_seconds(g)
    unplug_boot_disk(g)
    exercise(g, http_repo, boot_metrics, "iso")


def test_vram_from_the_sdisk(start_machine: StartMachine, vm_workdir: Path, sdisk_image: Path,
                             nocloud_seed: Path, sockets_dir: Path, http_repo: str,
                             boot_metrics: dict[str, object]) -> None:
    disk = overlay(sdisk_image, vm_workdir / "vram-sdisk.qcow2", base_format="raw")
    boot = Drive(disk, ident="boot")
    g = start_machine(machine(boot, nocloud_seed, sockets_dir), name="vram-sdisk-1")
    assert json.loads(g.sh("mix --json vram status"))["in_effect"] == "off"
    g.sh("mix vram enable")
    assert g.poweroff() == 0
    g = start_machine(machine(boot, nocloud_seed, sockets_dir), name="vram-sdisk-2")
    g.vm.wait_for(r"VRAM: SDISK /dev/vd[a-z]3 released", 5)
    boot_metrics["vram_sdisk_login_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["vram_sdisk_copy_s"] = copy_seconds(g)
    assert "VRAM=on" in g.sh("cat /proc/cmdline")
    unplug_boot_disk(g)
    exercise(g, http_repo, boot_metrics, "sdisk")


def test_vram_from_the_viso_and_its_changes_are_lost(
        start_machine: StartMachine, vm_workdir: Path, viso_image: Path, nocloud_seed: Path,
        sockets_dir: Path, http_repo: str, boot_metrics: dict[str, object]) -> None:
    disk = overlay(viso_image, vm_workdir / "vram-viso.qcow2")
    boot = Drive(disk, ident="boot")
    g = start_machine(machine(boot, nocloud_seed, sockets_dir), name="vram-viso-1")
    st = json.loads(g.sh("mix --json vram status"))
    assert st["medium"] == "disk" and st["in_effect"] == "off" and st["next_boot"] == "off"
    assert "lost at power-off" in g.sh("mix vram enable")
    assert g.poweroff() == 0

    g = start_machine(machine(boot, nocloud_seed, sockets_dir), name="vram-viso-2")
    g.vm.wait_for(r"VRAM: root disk /dev/vd[a-z]3 released", 5)
    boot_metrics["vram_viso_login_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["vram_viso_copy_s"] = copy_seconds(g)
    assert "# VRAM (disk released): UUID=" in g.sh("cat /etc/fstab")
    g.sh("mix vram disable")  # kept on the disk (mounted for it) while it is attached
    unplug_boot_disk(g)
    exercise(g, http_repo, boot_metrics, "disk")
    assert g.poweroff() == 0

    g = start_machine(machine(boot, nocloud_seed, sockets_dir), name="vram-viso-3")
    st = json.loads(g.sh("mix --json vram status"))
    assert st["in_effect"] == "off" and st["requested"] == "off"
    assert g.ssh("test -e /root/vram-file", check=False).returncode == 1  # lost, as said
    assert g.ssh(f"mix list | grep -q '^{PACKAGE} '", check=False).returncode == 1
