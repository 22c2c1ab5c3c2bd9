"""QEMU command lines for MixOS: one frozen `Machine` value builds every one.

The VM tests, the benchmarks, `mixbuild qemu --print` and `mix viso boot` all
describe a VM as a `Machine` and get its argv from `command()`, so a person can
paste and rerun any of them. Standard library only: this module ships in MixOS
(package mixos-boot) for `mix viso boot`. The probe that decides between KVM and
TCG by booting a kernel stays with the build tooling (mixbuild.vm.qemu).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

QEMU = "qemu-system-x86_64"
OVMF_CANDIDATES = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd")
# qboot: QEMU's minimal firmware for direct kernel boot (no disk boot, no option
# ROMs); it reaches the kernel ~0.3 s sooner than SeaBIOS under TCG.
QBOOT = Path("/usr/share/qemu/qboot.rom")


MACHINES = ("q35", "pc", "microvm")
# The machine direct kernel boots use (tests, benchmarks): microvm reaches /init
# 0.86 s sooner than q35 under TCG (no PCI/AHCI/ACPI enumeration; docs/benchmarks.md).
DIRECT_MACHINE = "microvm"


@dataclass(frozen=True)
class Drive:
    """A writable (or read-only) virtio disk: an installed system, a VISO, a blank
    target for the installer. The options are the VISO's documented ones."""

    path: Path
    format: str = "qcow2"  # "qcow2" or "raw"
    readonly: bool = False
    # A QEMU device id: the disk can then be unplugged from the running VM (QMP
    # device_del IDENT, as the VRAM tests do); "" for the plain -drive form.
    ident: str = ""
    # Writes go to a temporary file QEMU deletes at exit: the image stays as built
    # (`mix viso boot --snapshot`, `make run`).
    snapshot: bool = False

    def option(self) -> str:
        where = f"if=none,id={self.ident}-drive" if self.ident else "if=virtio"
        opt = f"file={self.path},{where},format={self.format},cache=writeback,aio=threads"
        return opt + (",readonly=on" if self.readonly else "") + \
            (",snapshot=on" if self.snapshot else "")


@dataclass(frozen=True)
class Machine:
    """One VM: what it boots, what is attached, how it is accelerated."""

    memory_mb: int = 256
    cpus: int = 1
    # QEMU machine type. q35 puts the CD-ROM on AHCI, which SeaBIOS reads by DMA:
    # GRUB loads the kernel ~3x faster than from pc's IDE CD-ROM (PIO) under TCG.
    # microvm (direct kernel boots only) has no PCI bus, no AHCI, no PS/2, no ACPI:
    # every device is virtio over MMIO, the ISO a virtio disk.
    machine: str = "q35"
    accel: str = "tcg"  # "tcg" or "kvm"
    iso: Path | None = None  # a CD-ROM (on microvm a virtio disk); booted unless kernel is set
    # "disk": the ISO attached as a virtio disk instead, as if written to a USB stick
    # (the image is hybrid: the firmware boots it from its MBR/GPT).
    iso_media: str = "cdrom"
    kernel: Path | None = None  # direct kernel boot (-kernel/-initrd/-append)
    initrd: Path | None = None
    append: str = ""
    disks: tuple[Path, ...] = ()  # raw images on virtio-blk, read-only, in order
    # Virtio disks (writable by default), before `disks`. With neither iso= nor
    # kernel=, the machine boots from the first one (an installed system, a VISO).
    drives: tuple[Drive, ...] = ()
    ssh_port: int | None = None  # host 127.0.0.1:ssh_port -> guest port 22 (virtio NIC)
    # more (host port, guest port) TCP forwards from 127.0.0.1, like ssh_port's
    forwards: tuple[tuple[int, int], ...] = ()
    network: bool = True  # a virtio NIC on QEMU's user-mode network
    uefi: bool = False  # OVMF instead of SeaBIOS
    qboot: bool = True  # direct kernel boots use qboot instead of SeaBIOS when installed
    graphics: bool = False  # a VGA display window instead of none
    serial: str = "stdio"  # QEMU -serial backend; "mon:stdio" for interactive use
    # A Unix socket for QEMU's human monitor (HMP), e.g. to press keys on the
    # emulated keyboard ("sendkey esc"); none by default.
    monitor: Path | None = None
    # A Unix socket for QMP, QEMU's machine protocol (e.g. device_del of a disk).
    qmp: Path | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.accel not in ("tcg", "kvm"):
            raise ValueError(f"accel must be 'tcg' or 'kvm', not {self.accel!r}")
        if self.kernel is None and self.iso is None and not self.drives:
            raise ValueError("a Machine boots an ISO (iso=), a kernel (kernel=) or a disk "
                             "(drives=); none given")
        if self.initrd is not None and self.kernel is None:
            raise ValueError("initrd= needs kernel= (direct kernel boot)")
        if self.iso_media not in ("cdrom", "disk"):
            raise ValueError(f"iso_media must be 'cdrom' or 'disk', not {self.iso_media!r}")
        if self.machine not in MACHINES:
            raise ValueError(f"machine must be one of {', '.join(MACHINES)}, not {self.machine!r}")
        if self.mmio and (self.kernel is None or self.uefi or self.graphics):
            raise ValueError("the microvm machine boots a kernel directly (kernel=), "
                             "without firmware menus (uefi=) or a display (graphics=)")

    @property
    def mmio(self) -> bool:
        """Devices on virtio-mmio (microvm) rather than PCI."""
        return self.machine == "microvm"


def ovmf_firmware() -> Path:
    for candidate in OVMF_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no OVMF firmware found for UEFI boot; install Debian's 'ovmf'")


def command(m: Machine) -> list[str]:
    """The qemu-system-x86_64 argv for machine M."""
    machine = f"{m.machine},accel={m.accel}"
    if m.mmio:
        # Without ACPI. With it, microvm is a hardware-reduced ACPI machine: no PIT
        # interrupt, no HPET or PM timer, and when the TSC calibration against the
        # PIT fails (4 of 50 probe boots under TCG here) the kernel waits forever for a
        # tick. Without it the PIT ticks, and QEMU puts the virtio devices on the
        # kernel command line. The price: no power-off device (see VM.wait_exit).
        machine += ",acpi=off"
    argv = [QEMU, "-nodefaults", "-no-user-config", "-machine", machine,
            "-m", f"{m.memory_mb}M", "-smp", str(m.cpus),
            "-display", "gtk" if m.graphics else "none", "-serial", m.serial,
            "-no-reboot"]
    if m.accel == "kvm":
        argv += ["-cpu", "host"]
    if m.graphics:
        argv += ["-vga", "std"]
    if m.uefi:
        argv += ["-bios", str(ovmf_firmware())]
    elif m.kernel is not None and m.qboot and QBOOT.is_file() and not m.mmio:
        argv += ["-bios", str(QBOOT)]  # (microvm's own firmware is qboot)
    if m.kernel is not None:
        argv += ["-kernel", str(m.kernel)]
        if m.initrd is not None:
            argv += ["-initrd", str(m.initrd)]
        append = m.append
        if m.mmio:
            # No PCI bus to probe for. Not "acpi=off": with neither ACPI nor MP tables
            # that turns the local APIC off as well, and the kernel then hangs. The
            # kernel notes both absences once ("A valid RSDP was not found", "PCI:
            # Fatal: No config space access function found"); both are harmless here.
            append = f"{append} pci=off".strip()
        if append:
            argv += ["-append", append]
    if m.mmio:
        # microvm: the ISO is the first virtio disk (the initramfs finds it by label).
        for n, image in enumerate((m.iso, *m.disks) if m.iso is not None else m.disks):
            argv += ["-drive", f"file={image},if=none,id=disk{n},format=raw,readonly=on",
                     "-device", f"virtio-blk-device,drive=disk{n}"]
        for n, drive in enumerate(m.drives):
            ro = (",readonly=on" if drive.readonly else "") + \
                (",snapshot=on" if drive.snapshot else "")
            argv += ["-drive", (f"file={drive.path},if=none,id=drive{n},"
                                f"format={drive.format},cache=writeback,aio=threads{ro}"),
                     "-device", f"virtio-blk-device,drive=drive{n}"]
    else:
        if m.iso is not None and m.iso_media == "disk":
            argv += ["-drive", f"file={m.iso},if=none,id=iso,format=raw,readonly=on",
                     "-device", "virtio-blk-pci,drive=iso,id=iso-disk"
                     + (",bootindex=0" if m.kernel is None else "")]
        elif m.iso is not None:
            # On q35 an AHCI (SATA) CD-ROM; on pc the secondary IDE master.
            argv += ["-drive", f"file={m.iso},media=cdrom,if=ide,index=2,readonly=on"]
            if m.kernel is None:
                argv += ["-boot", "order=d"]
        for n, drive in enumerate(m.drives):
            argv += ["-drive", drive.option()]
            if drive.ident:
                boot = ",bootindex=0" if n == 0 and m.iso is None and m.kernel is None else ""
                bus = ""
                if m.machine == "q35":
                    # q35's root complex takes no hot-plug: a root port of its own does.
                    argv += ["-device", (f"pcie-root-port,id={drive.ident}-port,"
                             f"chassis={n + 1},slot={n + 1}")]
                    bus = f",bus={drive.ident}-port"
                argv += ["-device", f"virtio-blk-pci,drive={drive.ident}-drive,id={drive.ident}"
                         + bus + boot]
        for disk in m.disks:
            argv += ["-drive", f"file={disk},if=virtio,format=raw,readonly=on"]
    if m.network:
        netdev = "user,id=net0"
        if m.ssh_port is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{m.ssh_port}-:22"
        for host, guest in m.forwards:
            netdev += f",hostfwd=tcp:127.0.0.1:{host}-:{guest}"
        # romfile= skips the network boot ROM: nothing boots from the network
        # and SeaBIOS starts faster without it.
        nic = "virtio-net-device,netdev=net0" if m.mmio else "virtio-net-pci,netdev=net0,romfile="
        argv += ["-netdev", netdev, "-device", nic]
    argv += ["-device", "virtio-rng-device" if m.mmio else "virtio-rng-pci"]
    if m.monitor is not None:
        argv += ["-monitor", f"unix:{m.monitor},server=on,wait=off"]
    if m.qmp is not None:
        argv += ["-qmp", f"unix:{m.qmp},server=on,wait=off"]
    argv += list(m.extra)
    return argv


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for the SSH forward)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kvm_usable() -> bool:
    """Whether this process may open /dev/kvm (not whether KVM guests work: the
    probe in mixbuild.vm.qemu finds that out)."""
    return os.access("/dev/kvm", os.R_OK | os.W_OK)
