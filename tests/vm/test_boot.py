"""MixOS boots from its ISO (and by direct kernel boot) to a login prompt, and a
user logs in over SSH with a key handed in at boot.

Measures, printed at the end of the run: QEMU start -> login prompt and -> SSH,
ISO size, memory in use at the login prompt (MemTotal - MemAvailable).
"""

from __future__ import annotations

import re

import pytest
from conftest import Guest, Images, StartVM

from mixbuild.images import iso as iso_stage

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

QEMU_USER_NET_GUEST_IP = "10.0.2.15"  # the address QEMU's user network leases first


def meminfo_kb(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+) kB", line)
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


def dependency_names(dep: str) -> list[str]:
    """'a>=1 | b' -> ['a', 'b']"""
    return [re.split(r"[\s<>=!]", alt.strip(), maxsplit=1)[0] for alt in dep.split("|")]


def test_iso_boot_reaches_login_and_ssh(guest: Guest, mixos_images: Images,
                                        boot_metrics: dict[str, object]) -> None:
    used = meminfo_kb(guest.sh("cat /proc/meminfo"))
    used_mb = (used["MemTotal"] - used["MemAvailable"]) / 1024
    boot_metrics["iso_size_mb"] = round(mixos_images.iso.stat().st_size / 2**20, 1)
    boot_metrics["iso_memory_in_use_mb"] = round(used_mb, 1)
    boot_metrics["iso_memtotal_mb"] = round(used["MemTotal"] / 1024, 1)
    assert guest.login_seconds is not None and guest.login_seconds > 0
    assert guest.sh("id -u").strip() == "0"


def test_console_shows_boot_messages_of_each_stage(guest: Guest) -> None:
    console = guest.vm.console()
    assert iso_stage.MENU_HINT in console, "GRUB's menu file did not run (no hint on the serial console)"
    assert "mixos-initramfs: root image mounted" in console
    assert re.search(r"login: ?", console)


def test_mix_lists_base_and_its_dependencies(guest: Guest) -> None:
    import json

    installed = {p["name"]: p for p in json.loads(guest.sh("mix --json list --installed"))}
    assert "mixos-base" in installed, f"mixos-base not installed; have {sorted(installed)}"
    info = json.loads(guest.sh("mix --json info mixos-base"))
    deps = info.get("dependencies") or []
    assert deps, "mixos-base lists no dependencies"
    missing = [d for d in deps if not any(n in installed for n in dependency_names(d))]
    assert not missing, f"dependencies of mixos-base not installed: {missing}"


def test_mix_verify_is_clean(guest: Guest) -> None:
    out = guest.ssh("mix verify", check=False)
    assert out.returncode == 0, f"mix verify found problems:\n{out.stdout}\n{out.stderr}"


def test_mix_installs_and_removes_a_zstd_package_from_the_medium(guest: Guest) -> None:
    """The repository on the boot medium is zstd (package format 2): the booted image's
    mix reads it with python3-zstandard. The package is removed again, so that the
    system stays as booted for the other tests."""
    repo = "/run/mixos/medium/repo"
    first = guest.sh(f"ls {repo}/openssh-*.mixpkg").split()[0]
    assert guest.sh(f"head -c 4 {first} | od -An -tx1").split() == ["28", "b5", "2f", "fd"]
    before = guest.sh("mix list --installed")
    out = guest.ssh("mix update && mix -y install openssh && ssh -V 2>&1 && mix verify",
                    timeout=300, check=False)
    removed = guest.ssh("mix -y remove openssh", timeout=300, check=False)
    assert out.returncode == 0 and "OpenSSH_9.2" in out.stdout, f"{out.stdout}\n{out.stderr}"
    assert removed.returncode == 0, removed.stderr
    assert guest.sh("mix list --installed") == before


def test_network_has_a_dhcp_lease(guest: Guest) -> None:
    addrs = guest.sh("ip -4 -o addr show")
    assert f"inet {QEMU_USER_NET_GUEST_IP}/" in addrs, addrs
    assert "default via" in guest.sh("ip -4 route show default")


def test_root_is_a_tmpfs_overlay_over_a_read_only_squashfs(guest: Guest) -> None:
    mounts = [line.split() for line in guest.sh("cat /proc/mounts").splitlines()]
    root = [m for m in mounts if m[1] == "/"]
    assert root and root[-1][2] == "overlay", f"/ is {root}"
    lower = [m for m in mounts if m[1] == "/run/mixos/lower"]
    assert lower and lower[0][2] == "squashfs" and "ro" in lower[0][3].split(","), lower
    guest.sh("echo written > /var/tmp-overlay-check && rm /var/tmp-overlay-check")


def test_uptime_is_sane(guest: Guest, boot_metrics: dict[str, object]) -> None:
    uptime = float(guest.sh("cut -d' ' -f1 /proc/uptime"))
    assert 0 < uptime < 3600
    boot_metrics["iso_guest_uptime_at_check_s"] = round(uptime, 2)


def test_nocloud_seed_set_the_host_name(guest: Guest) -> None:
    assert guest.sh("hostname").strip() == "mixos-test"


def test_boot_env_records_the_medium(guest: Guest) -> None:
    env = dict(line.split("=", 1) for line in guest.sh("cat /run/mixos/boot.env").splitlines())
    assert env["MIXOS_ROOT_LABEL"] == "MIXOS"
    assert env["MIXOS_VRAM"] == "off"  # 256 MiB is below VRAM=auto's threshold


def test_direct_kernel_boot_with_key_on_the_command_line(
        start_vm: StartVM, boot_metrics: dict[str, object]) -> None:
    g = start_vm("direct", seed=False, cmdline_key=True)
    boot_metrics["direct_login_prompt_s"] = round(g.login_seconds or 0, 2)
    boot_metrics["direct_ssh_ready_s"] = round(g.ssh_seconds or 0, 2)
    used = meminfo_kb(g.sh("cat /proc/meminfo"))
    boot_metrics["direct_memory_in_use_mb"] = round(
        (used["MemTotal"] - used["MemAvailable"]) / 1024, 1)
    assert "mixos.ssh_key=" in g.sh("cat /proc/cmdline")
    # microvm: the ISO is a virtio disk with a partition table whose HFS+ partition
    # (for Macs) carries the label too; the initramfs mounted the whole disk.
    assert "MIXOS_MEDIUM=/dev/vda\n" in g.sh("cat /run/mixos/boot.env")
    assert g.poweroff() == 0  # microvm: the kernel powered down (VM.wait_exit)


def test_direct_kernel_boot_on_the_pc_machine(start_vm: StartVM,
                                              boot_metrics: dict[str, object]) -> None:
    # q35: PCI devices and the ISO as an AHCI CD-ROM, as the ISO boots see them.
    g = start_vm("direct", machine="q35", seed=False, cmdline_key=True)
    boot_metrics["direct_q35_login_prompt_s"] = round(g.login_seconds or 0, 2)
    assert "MIXOS_MEDIUM=/dev/sr0\n" in g.sh("cat /run/mixos/boot.env")


def test_the_iso_written_to_a_disk_boots_too(start_vm: StartVM) -> None:
    # The hybrid image as a virtio disk (a USB stick, a cloud volume): SeaBIOS boots
    # GRUB from its MBR; the disk's HFS+ partition carries the label MIXOS too, and
    # /init must mount the whole disk's ISO 9660 file system, not that partition.
    g = start_vm("iso", iso_media="disk")
    env = g.sh("cat /run/mixos/boot.env")
    assert "MIXOS_MEDIUM=/dev/vda\n" in env, env
    assert " / overlay " in g.sh("cat /proc/mounts")


def test_vram_mode_copies_the_root_image_and_releases_the_medium(start_vm: StartVM) -> None:
    g = start_vm("direct", append="VRAM=on", cmdline_key=True, seed=False)
    env = g.sh("cat /run/mixos/boot.env")
    assert "MIXOS_VRAM=on" in env, env
    mounts = g.sh("cat /proc/mounts")
    assert " /run/mixos/medium " not in mounts, "the boot medium is still mounted"
    assert " /run/mixos/vram tmpfs " in mounts
    assert g.poweroff() == 0


def test_vram_auto_copies_when_ram_is_ample(start_vm: StartVM) -> None:
    # VRAM=auto (the default) copies from 1 GiB of RAM on; 256 MiB guests don't.
    g = start_vm("direct", memory_mb=1100, cmdline_key=True, seed=False)
    env = g.sh("cat /run/mixos/boot.env")
    assert "MIXOS_VRAM_REQUESTED=auto" in env and "MIXOS_VRAM=on" in env, env
    assert "VRAM: boot medium" in g.vm.console()


def test_grub_rescue_entry_opens_a_shell_on_the_serial_console(start_vm: StartVM) -> None:
    g = start_vm("iso", seed=False, wait_login=False, wait_ssh=False, monitor=True)
    g.vm.open_boot_menu()  # Esc on the keyboard: the menu is hidden otherwise
    g.vm.wait_for(r"rescue shell \(initramfs\)", 30)
    for key in ("down", "down", "ret"):  # the third entry, on the keyboard the menu reads
        g.vm.sendkey(key)
    g.vm.wait_for(r"'exit' continues the boot", 120)
    mark = g.vm.mark()
    g.vm.type("echo RESCUE-$((6 * 7)); cat /proc/cmdline\r")
    g.vm.wait_for("RESCUE-42", 30, since=mark)
    g.vm.wait_for(r"mixos\.root_label=MIXOS rescue", 30, since=mark)
    g.vm.type("exit\r")  # leaving the shell boots the system
    g.vm.wait_for(r"login: ?", 120, since=mark)


def test_console_boot_menu_from_the_serial_port_boots_vram(start_vm: StartVM) -> None:
    # GRUB's hidden menu listens to the keyboard; on a serial line, a key pressed
    # while the kernel starts opens the initramfs's menu instead.
    g = start_vm("iso", seed=False, wait_login=False, wait_ssh=False)
    g.vm.open_console_menu()
    g.vm.wait_for(r"choice \[1\]: ", 30)
    mark = g.vm.mark()
    g.vm.type("2\r")
    g.vm.wait_for(r"VRAM=on chosen", 30, since=mark)
    g.vm.wait_for(r"VRAM: boot medium \S+ released", 60, since=mark)
    g.vm.wait_for(r"root image mounted \(VRAM=on\)", 60, since=mark)
    g.vm.wait_for(r"login: ?", 120, since=mark)


def test_missing_medium_stops_in_a_rescue_shell_with_a_reason(start_vm: StartVM) -> None:
    g = start_vm("direct", append="mixos.wait=1", iso=False, seed=False, wait_login=False,
                 wait_ssh=False)
    g.vm.wait_for(r"no filesystem labelled MIXOS appeared within 1 s", 120)
    g.vm.wait_for(r"'exit' retries the boot", 30)


def test_iso_boots_with_uefi_firmware_too(start_vm: StartVM,
                                          boot_metrics: dict[str, object]) -> None:
    g = start_vm("iso", uefi=True)
    boot_metrics["uefi_iso_login_prompt_s"] = round(g.login_seconds or 0, 2)
    assert g.sh("test -d /sys/firmware/efi && echo efi").strip() == "efi"
    assert g.poweroff() == 0
