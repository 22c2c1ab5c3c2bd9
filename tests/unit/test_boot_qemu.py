"""QEMU command lines (one place builds them all) and the accelerator choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixbuild.vm import qemu
from mixbuild.vm.qemu import Drive, Machine, command


def test_iso_boot_is_a_q35_cdrom_with_user_network_forwarded_on_loopback() -> None:
    argv = command(Machine(iso=Path("/x/mixos.iso"), ssh_port=2222, disks=(Path("/s.img"),)))
    joined = " ".join(argv)
    assert "-machine q35,accel=tcg" in joined
    assert "file=/x/mixos.iso,media=cdrom" in joined and "-boot order=d" in joined
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined
    assert "file=/s.img,if=virtio,format=raw,readonly=on" in joined
    assert "-kernel" not in argv and "-cpu" not in argv and "-nodefaults" in argv


def test_direct_boot_passes_kernel_initrd_and_arguments() -> None:
    m = Machine(kernel=Path("/k"), initrd=Path("/i"), append="console=ttyS0 quiet",
                iso=Path("/x.iso"))
    argv = command(m)
    assert argv[argv.index("-kernel") + 1] == "/k"
    assert argv[argv.index("-initrd") + 1] == "/i"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet"
    assert "-boot" not in argv  # the ISO is only the root image's medium here
    if qemu.QBOOT.is_file():
        assert argv[argv.index("-bios") + 1] == str(qemu.QBOOT)


def test_microvm_puts_every_device_on_virtio_mmio() -> None:
    m = Machine(machine="microvm", kernel=Path("/k"), initrd=Path("/i"), iso=Path("/x.iso"),
                disks=(Path("/seed.img"),), ssh_port=2222)
    argv = command(m)
    assert argv[argv.index("-machine") + 1] == "microvm,accel=tcg,acpi=off"
    assert argv[argv.index("-append") + 1] == "pci=off"  # no PCI bus to search
    # The ISO is the first virtio disk, the seed the second; no IDE, no PCI devices.
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0].startswith("file=/x.iso,if=none,id=disk0") and "/seed.img" in drives[1]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices == ["virtio-blk-device,drive=disk0", "virtio-blk-device,drive=disk1",
                       "virtio-net-device,netdev=net0", "virtio-rng-device"]
    assert "-bios" not in argv  # microvm's own firmware
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in argv[argv.index("-netdev") + 1]


def test_the_iso_as_a_disk_is_the_first_boot_device() -> None:
    argv = command(Machine(iso=Path("/x.iso"), iso_media="disk", disks=(Path("/seed.img"),)))
    assert "-boot" not in argv and "media=cdrom" not in " ".join(argv)
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices[0] == "virtio-blk-pci,drive=iso,id=iso-disk,bootindex=0"
    assert argv[argv.index("-drive") + 1] == "file=/x.iso,if=none,id=iso,format=raw,readonly=on"


def test_a_drive_with_an_id_can_be_unplugged_and_boots_first() -> None:
    argv = command(Machine(drives=(Drive(Path("/d.viso"), ident="boot"),),
                           disks=(Path("/seed.img"),), qmp=Path("/tmp/q")))
    assert argv[argv.index("-drive") + 1].startswith("file=/d.viso,if=none,id=boot-drive,")
    assert "pcie-root-port,id=boot-port,chassis=1,slot=1" in argv  # q35: hot-pluggable there
    assert "virtio-blk-pci,drive=boot-drive,id=boot,bus=boot-port,bootindex=0" in argv
    assert argv[argv.index("-qmp") + 1] == "unix:/tmp/q,server=on,wait=off"


def test_uefi_uses_ovmf_and_kvm_uses_the_host_cpu() -> None:
    argv = command(Machine(iso=Path("/x.iso"), uefi=True, accel="kvm"))
    assert "-bios" in argv and "OVMF" in argv[argv.index("-bios") + 1]
    assert "-cpu" in argv and argv[argv.index("-cpu") + 1] == "host"
    assert "-machine" in argv and argv[argv.index("-machine") + 1].endswith("accel=kvm")


def test_a_disk_boot_uses_the_visos_drive_options() -> None:
    argv = command(Machine(drives=(Drive(Path("/x.viso")),)))
    assert "file=/x.viso,if=virtio,format=qcow2,cache=writeback,aio=threads" in argv
    assert "-kernel" not in argv and "-cdrom" not in argv


@pytest.mark.parametrize("kwargs, message", [
    ({}, "none given"),
    ({"iso": Path("/x"), "initrd": Path("/i")}, "initrd= needs kernel="),
    ({"iso": Path("/x"), "accel": "hvf"}, "accel must be"),
    ({"iso": Path("/x"), "machine": "virt"}, "machine must be one of"),
    ({"iso": Path("/x"), "iso_media": "usb"}, "iso_media must be"),
    ({"iso": Path("/x"), "machine": "microvm"}, "boots a kernel directly"),
    ({"kernel": Path("/k"), "machine": "microvm", "uefi": True}, "boots a kernel directly"),
])
def test_invalid_machines_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Machine(**kwargs)  # type: ignore[arg-type]


def test_accelerator_override_skips_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXOS_ACCEL", "tcg")
    assert qemu.probe_accel(Path("/nonexistent/bzImage"), Path("/nonexistent/initrd")) == "tcg"
    monkeypatch.setenv("MIXOS_ACCEL", "fast")
    with pytest.raises(ValueError, match="MIXOS_ACCEL"):
        qemu.probe_accel(Path("/k"), Path("/i"))


def test_no_usable_kvm_means_tcg_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIXOS_ACCEL", raising=False)
    monkeypatch.setattr(qemu, "kvm_usable", lambda: False)
    assert qemu.probe_accel(Path("/nonexistent/bzImage"), Path("/nonexistent/initrd")) == "tcg"


def test_free_port_is_bindable_on_loopback() -> None:
    import socket

    port = qemu.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
