"""The unattended installer: the ISO with an install.yaml (mixbuild iso
--install-config) installs MixOS onto a blank 2 GiB virtio disk and powers off;
the disk then boots alone, under SeaBIOS and under OVMF, with the host name, the
user and key, the extra package and the mounts install.yaml asked for, and root
login refused for any key not given to root. The installer's refusals (a disk
that holds data, the boot medium, a missing disk, a wrong install.yaml) are
checked inside the live ISO, where they would happen."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Guest, KeyPair, StartMachine

from mixbuild.common import PROJECT
from mixbuild.vm.guest import VM
from mixbuild.vm.qemu import Drive, Machine

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]

HOSTNAME = "mixos-installed"
USER = "tester"
INSTALL_TIMEOUT = 600


def install_yaml(user_key: str, root_key: str) -> str:
    return f"""\
version: 1
disk: auto
partitions:
  swap: {{size: 64MiB}}
hostname: {HOSTNAME}
users:
  - name: {USER}
    gecos: Test user
    admin: true
    ssh_keys: ["{user_key}"]
root_ssh_keys: ["{root_key}"]
packages: [nginx]
finish: poweroff
"""


@pytest.fixture(scope="module")
def root_keypair(vm_workdir: Path) -> KeyPair:
    key = vm_workdir / "id_root"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return KeyPair(private=key, public=key.with_suffix(".pub").read_text().strip())


@pytest.fixture(scope="module")
def autoinstall_iso(vm_workdir: Path, ssh_keypair: KeyPair, root_keypair: KeyPair) -> Path:
    config = vm_workdir / "install.yaml"
    config.write_text(install_yaml(ssh_keypair.public, root_keypair.public))
    iso = vm_workdir / "autoinstall.iso"
    subprocess.run([sys.executable, "-m", "mixbuild", "iso", "--install-config", str(config),
                    "-o", str(iso)], check=True, capture_output=True, timeout=600,
                   env={"PYTHONPATH": str(PROJECT / "src"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return iso


def install(iso: Path, disk: Path, accel: str, workdir: Path, *, uefi: bool,
            metrics: dict[str, object]) -> None:
    """Boot the unattended ISO with DISK attached and wait for it to power off."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "2G"], check=True)
    machine = Machine(accel=accel, iso=iso, drives=(Drive(disk),), uefi=uefi, memory_mb=512)
    name = "ovmf" if uefi else "seabios"
    with VM(machine, workdir / f"install-{name}.console.log") as vm:
        vm.wait_for("autoinstall: installing MixOS", 180)
        end = vm.wait_for(r"mixos-install: done|autoinstall: FAILED", INSTALL_TIMEOUT)
        assert end.group(0) == "mixos-install: done", vm.tail(80)
        code = vm.wait_exit(60)
        assert code == 0
        began = vm.arrival_of("autoinstall: installing MixOS")
        assert began is not None
        metrics[f"install_{name}_s"] = round(vm.elapsed() - began, 1)
        metrics[f"install_{name}_total_s"] = round(vm.elapsed(), 1)


def disk_machine(disk: Path, uefi: bool) -> Callable[[int, str], Machine]:
    return lambda port, accel: Machine(accel=accel, drives=(Drive(disk),), ssh_port=port,
                                       uefi=uefi)


@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_unattended_install_then_boot_from_the_disk_alone(
        firmware: str, autoinstall_iso: Path, vm_workdir: Path, vm_accel: str,
        ssh_keypair: KeyPair, root_keypair: KeyPair, start_machine: StartMachine,
        boot_metrics: dict[str, object]) -> None:
    uefi = firmware == "ovmf"
    disk = vm_workdir / f"installed-{firmware}.qcow2"
    install(autoinstall_iso, disk, vm_accel, vm_workdir, uefi=uefi, metrics=boot_metrics)

    user = start_machine(disk_machine(disk, uefi), user=USER, name=f"installed-{firmware}")
    boot_metrics[f"installed_{firmware}_login_prompt_s"] = round(user.login_seconds or 0, 2)
    assert user.sh("hostname").strip() == HOSTNAME
    assert "wheel" in user.sh("id").split("groups=")[1]
    # An admin (install.yaml admin: true) becomes root with doas; nobody has a password.
    assert user.sh("doas -n id -u").strip() == "0"
    installed = user.sh("mix list --installed")
    for pkg in ("mixos-base", "linux", "nginx", "mixos-growroot", "doas"):
        assert f"{pkg} " in installed or installed.startswith(pkg), f"{pkg} not installed"
    fstab = user.sh("cat /etc/fstab")
    assert "/boot/efi  vfat" in fstab and " swap " in fstab
    root_line = next(line for line in fstab.splitlines() if line.split()[1:2] == ["/"])
    assert root_line.startswith("UUID=")
    # The user's key does not open root's account; root's own key does.
    as_root = Guest(user.vm, user.port, ssh_keypair.private).ssh_argv()
    refused = subprocess.run([*as_root, "true"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, check=False)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    root = Guest(user.vm, user.port, root_keypair.private)
    assert root.sh("id -u").strip() == "0"
    root.sh("mix verify", timeout=300)
    assert "installed: MixOS" in root.sh("cat /var/log/mixos-install.log")
    assert root.sh("grep ^root: /etc/shadow").split(":")[1] == "*"
    assert root.sh("awk '$2==\"/\"{print $3}' /proc/mounts").strip().endswith("ext4")
    swaps = root.sh("cat /proc/swaps").splitlines()
    assert len(swaps) == 2, swaps
    if uefi:
        assert root.sh("test -d /sys/firmware/efi && echo efi").strip() == "efi"
        assert root.sh("ls /boot/efi/EFI/BOOT").split() == ["BOOTX64.EFI"]


# ---- refusals, inside the live ISO -----------------------------------------------------

def dry_run(guest: Guest, yaml: str) -> subprocess.CompletedProcess[str]:
    guest.ssh(f"cat > /tmp/i.yaml <<'EOF'\n{yaml}EOF")
    return guest.ssh("mixos-install --dry-run --config /tmp/i.yaml", check=False, timeout=120)


def test_installer_refuses_the_boot_medium_and_a_disk_too_small(guest: Guest) -> None:
    medium = guest.sh(". /run/mixos/boot.env; echo $MIXOS_MEDIUM").strip()
    proc = dry_run(guest, f"version: 1\ndisk: {medium}\nwipe: true\n")
    assert proc.returncode == 1 and "the medium this system booted from" in proc.stderr
    # The NoCloud seed disk: 2 MiB. (A disk that holds data: tests/unit/test_install_disk.py.)
    seed = guest.sh("blkid | grep -i 'LABEL=\"cidata\"' | cut -d: -f1").strip()
    proc = dry_run(guest, f"version: 1\ndisk: {seed}\nwipe: true\n")
    assert proc.returncode == 1 and f"disk {seed}: the disk is 2 MiB" in proc.stderr


def test_installer_refuses_a_missing_disk_and_no_empty_disk(guest: Guest) -> None:
    proc = dry_run(guest, "version: 1\ndisk: /dev/vdz\n")
    assert proc.returncode == 1 and "/dev/vdz does not exist" in proc.stderr
    proc = dry_run(guest, "version: 1\ndisk: auto\n")
    assert proc.returncode == 1 and "found no empty disk" in proc.stderr


def test_installer_refuses_a_wrong_install_yaml_before_touching_a_disk(guest: Guest) -> None:
    proc = dry_run(guest, "version: 1\ndisk: auto\nusers:\n  - name: bob\n    sudo: true\n")
    assert proc.returncode == 2
    assert "i.yaml:5: users[0].sudo: unknown key" in proc.stderr
