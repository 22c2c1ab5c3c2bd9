"""The SDISK (make sdisk): one disk carrying the live ISO and the unattended
installer, booted under SeaBIOS and OVMF; each image picked through the GRUB
menu boots (normal and VRAM), the installer installs onto a second disk, and
`mix sdisk` manages the images of the SDISK it runs from, a killed `add`
included.

Each test boots its own qcow2 overlay of the SDISK (the image stays as built).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Guest, StartMachine, overlay

from mixboot import menu
from mixbuild.common import ARTIFACTS
from mixbuild.images.iso import project_version
from mixbuild.vm.guest import VM
from mixbuild.vm.qemu import Drive, Machine

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

VERSION = project_version()
LIVE = f"mixos-{VERSION}.iso"
INSTALLER = f"mixos-{VERSION}-autoinstall.iso"
# The menu's order: images by file name, each normal, VRAM, rescue (an installer
# has no VRAM entry: it reads its medium).
ORDER = [menu.image_entry_id(f, e) for f in sorted([LIVE, INSTALLER])
         for e in ("normal", "vram", "rescue") if not (f == INSTALLER and e == "vram")]
INSTALL_TIMEOUT = 300


def sdisk_overlay(base: Path, path: Path) -> Path:
    return overlay(base, path, base_format="raw")


def sdisk_machine(disk: Path, seed: Path, monitor: Path, *, uefi: bool = False,
                  memory_mb: int = 256, extra: tuple[Drive, ...] = ()
                  ) -> Callable[[int, str], Machine]:
    return lambda port, accel: Machine(accel=accel, drives=(Drive(disk), *extra),
                                       disks=(seed,), ssh_port=port, uefi=uefi,
                                       monitor=monitor, memory_mb=memory_mb)


def pick(vm: VM, entry_id: str, *, uefi: bool = False) -> None:
    """Open the hidden GRUB menu and boot ENTRY_ID; the initramfs's first line
    names the image the entry booted (GRUB prints nothing for a chosen entry).
    Under OVMF the keys wait for the firmware to start GRUB: an Esc before that
    opens the firmware's own setup."""
    if uefi:
        vm.wait_for("BdsDxe: starting Boot", 60)
    vm.open_boot_menu()
    vm.sendkey("home")
    for _ in range(ORDER.index(entry_id)):
        vm.sendkey("down")
    vm.sendkey("ret")
    file = next(f for f in (LIVE, INSTALLER) if entry_id.startswith(f"image-{f}"))
    vm.wait_for(re.escape(f"(image /images/{file})"), 60)
    if entry_id.endswith("-vram"):
        vm.wait_for("VRAM: copying the root image", 60)


@pytest.fixture
def monitor_path(sockets_dir: Path) -> Path:
    return sockets_dir / "hmp"


def boot(start_machine: StartMachine, disk: Path, seed: Path, monitor: Path, entry: str | None,
         *, uefi: bool = False, ssh: bool = True, extra: tuple[Drive, ...] = ()) -> Guest:
    g = start_machine(sdisk_machine(disk, seed, monitor, uefi=uefi, extra=extra),
                      wait_login=False, wait_ssh=False)
    if entry is not None:
        pick(g.vm, entry, uefi=uefi)
    if entry is None or not entry.startswith(f"image-{INSTALLER}"):
        g.wait_login()
        if ssh:
            g.wait_ssh()
    return g


def test_sdisk_boots_the_default_image_under_ovmf(start_machine: StartMachine, vm_workdir: Path,
                                                  sdisk_image: Path, nocloud_seed: Path,
                                                  monitor_path: Path,
                                                  boot_metrics: dict[str, object]) -> None:
    disk = sdisk_overlay(sdisk_image, vm_workdir / "sdisk-ovmf.qcow2")
    g = boot(start_machine, disk, nocloud_seed, monitor_path, None, uefi=True)
    boot_metrics["sdisk_login_s_ovmf"] = round(g.login_seconds or 0, 2)
    assert f"mixos.image=/images/{LIVE}" in g.sh("cat /proc/cmdline")
    assert "MIXOS_SDISK=/dev/vda3" in g.sh("cat /run/mixos/boot.env")


def test_sdisk_runs_the_live_image_and_mix_sdisk_manages_it(
        start_machine: StartMachine, vm_workdir: Path, sdisk_image: Path, nocloud_seed: Path,
        monitor_path: Path, boot_metrics: dict[str, object]) -> None:
    disk = sdisk_overlay(sdisk_image, vm_workdir / "sdisk-live.qcow2")
    g = boot(start_machine, disk, nocloud_seed, monitor_path, menu.image_entry_id(LIVE))
    boot_metrics["sdisk_login_s_seabios"] = round(g.login_seconds or 0, 2)
    env = g.sh("cat /run/mixos/boot.env")
    assert f"MIXOS_IMAGE=/images/{LIVE}" in env and "MIXOS_SDISK=/dev/vda3" in env
    listed = json.loads(g.sh("mix sdisk list --json"))
    rows = {r["name"]: r for r in listed["images"]}
    assert set(rows) == {LIVE, INSTALLER}
    assert rows[LIVE]["running"] and rows[LIVE]["default"] and rows[LIVE]["version"] == VERSION
    assert rows[INSTALLER]["variant"] == "installer"
    assert rows[LIVE]["sha256"] == subprocess.run(
        ["sha256sum", str(ARTIFACTS / LIVE)], capture_output=True, text=True,
        check=True).stdout.split()[0]

    refused = g.ssh(f"mix sdisk remove {LIVE}", check=False)
    assert refused.returncode == 1 and "runs from" in refused.stderr

    # A killed add: its half-written copy is never listed nor in the menu.
    images = "/run/mixos/sdisk/images"
    killed = g.ssh(
        f"setsid mix sdisk add {images}/{INSTALLER} --name killed.iso >/dev/null 2>&1 & pid=$!; "
        f"n=0; while [ ! -e {images}/.partial-killed.iso ] && [ $n -lt 400 ]; do "
        "sleep 0.05; n=$((n+1)); done; kill -9 $pid; sleep 0.5; "
        f"ls -a {images}", check=False, timeout=120)
    assert ".partial-killed.iso" in killed.stdout, killed.stdout + killed.stderr
    assert "killed.iso" not in json.dumps(json.loads(g.sh("mix sdisk list --json")))
    assert "killed.iso" not in g.sh("cat /run/mixos/sdisk/boot/grub/grub.cfg")

    out = g.sh(f"mix sdisk add {images}/{INSTALLER} --name copy.iso --default", timeout=300)
    assert "added copy.iso" in out
    assert ".partial-killed.iso" not in g.sh(f"ls -a {images}")  # cleaned by the next change
    cfg = g.sh("cat /run/mixos/sdisk/boot/grub/grub.cfg")
    assert "loopback loop /images/copy.iso" in cfg
    assert json.loads(g.sh("mix sdisk list --json"))["images"][0]["default"]  # copy.iso
    g.sh(f"mix sdisk default {LIVE} && mix sdisk remove copy.iso")
    names = [r["name"] for r in json.loads(g.sh("mix sdisk list --json"))["images"]]
    assert names == sorted([LIVE, INSTALLER])
    assert " /run/mixos/sdisk ext4 ro," in g.sh("cat /proc/mounts")  # read-only again

    st = json.loads(g.sh("mix --json vram status"))
    assert st["medium"] == "sdisk" and st["in_effect"] == "off" and st["next_boot"] == "auto"
    g.sh("mix vram enable")
    assert "mixos_vram=on" in g.sh("cat /run/mixos/sdisk/boot/grub/grubenv")


def test_sdisk_vram_entry_releases_the_disk(start_machine: StartMachine, vm_workdir: Path,
                                           sdisk_image: Path, nocloud_seed: Path,
                                           monitor_path: Path) -> None:
    disk = sdisk_overlay(sdisk_image, vm_workdir / "sdisk-vram.qcow2")
    g = boot(start_machine, disk, nocloud_seed, monitor_path, menu.image_entry_id(LIVE, "vram"))
    g.vm.wait_for("VRAM: SDISK /dev/vda3 released", 5)
    mounts = g.sh("cat /proc/mounts")
    assert "/dev/vda" not in mounts and "/run/mixos/medium" not in mounts
    st = json.loads(g.sh("mix --json vram status"))
    assert st["in_effect"] == "on" and st["medium_needed"] is False


def test_sdisk_installer_image_installs_onto_a_second_disk(
        start_machine: StartMachine, vm_workdir: Path, sdisk_image: Path, nocloud_seed: Path,
        monitor_path: Path, boot_metrics: dict[str, object]) -> None:
    disk = sdisk_overlay(sdisk_image, vm_workdir / "sdisk-inst.qcow2")
    target = vm_workdir / "sdisk-target.qcow2"
    target.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), "2G"], check=True)
    g = boot(start_machine, disk, nocloud_seed, monitor_path, menu.image_entry_id(INSTALLER),
             uefi=True, extra=(Drive(target),))
    g.vm.wait_for("autoinstall: installing MixOS", 180)
    end = g.vm.wait_for(r"mixos-install: done|autoinstall: FAILED", INSTALL_TIMEOUT)
    assert "done" in end.group(0), g.vm.tail()
    assert g.vm.wait_exit(120) == 0  # finish: reboot (QEMU runs with -no-reboot)
    boot_metrics["sdisk_install_s_ovmf"] = round(g.vm.elapsed(), 1)
    # The install went to the blank disk (the SDISK, not empty, was left alone).
    raw = vm_workdir / "sdisk-target.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(target), str(raw)], check=True)
    table = subprocess.run(["sfdisk", "--dump", str(raw)], capture_output=True, text=True,
                           check=True).stdout
    raw.unlink()
    assert 'name="mixos-root"' in table


def test_sdisk_with_a_grub_password_refuses_editing_and_boots_locked(
        start_machine: StartMachine, vm_workdir: Path, nocloud_seed: Path,
        monitor_path: Path) -> None:
    from test_security import GRUB_HASH, editing_is_refused

    from mixbuild.images import sdisk as stage

    raw = stage.build([ARTIFACTS / LIVE], vm_workdir / "password.sdisk",
                      password_hash=GRUB_HASH)
    disk = sdisk_overlay(raw, vm_workdir / "sdisk-password.qcow2")
    g = start_machine(sdisk_machine(disk, nocloud_seed, monitor_path),
                      wait_login=False, wait_ssh=False)
    editing_is_refused(g.vm)  # 'e' asks for the superuser; a wrong password is refused
    g.vm.sendkey("ret")  # the default entry boots for anyone, locked
    g.wait_login()
    g.wait_ssh()
    assert "mixos.locked" in g.sh("cat /proc/cmdline").split()
