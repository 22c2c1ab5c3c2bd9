"""QEMU command lines for MixOS, and the probe that decides between KVM and TCG.

Every QEMU invocation of the project (VM tests, benchmarks, `make run`-style use)
is built here from one frozen `Machine` value, so a person can reproduce any test
boot by pasting the command `mixbuild qemu --print ...` prints.

KVM is used only where a probe boot proves that it works: the probe boots the
kernel and initramfs with `mixos.probe` (the initramfs prints one line and powers
off) and must reach that line within a few seconds. On machines where KVM guests
hang (as on the MixOS build hosts) the probe times out and TCG is used.
`MIXOS_ACCEL=kvm|tcg` skips the probe.

    python -m mixbuild qemu --iso artifacts/mixos-0.1.0.iso         # boot, serial on this terminal
    python -m mixbuild qemu --kernel K --initrd I --print            # show the command line
    python -m mixbuild qemu --probe                                  # which accelerator works here
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mixbuild.common import ARTIFACTS, log

QEMU = "qemu-system-x86_64"
OVMF_CANDIDATES = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd")
# qboot: QEMU's minimal firmware for direct kernel boot (no disk boot, no option
# ROMs); it reaches the kernel ~0.3 s sooner than SeaBIOS under TCG.
QBOOT = Path("/usr/share/qemu/qboot.rom")
PROBE_LINE = "mixos-initramfs: probe: userspace reached"


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

    def option(self) -> str:
        where = f"if=none,id={self.ident}-drive" if self.ident else "if=virtio"
        opt = f"file={self.path},{where},format={self.format},cache=writeback,aio=threads"
        return opt + (",readonly=on" if self.readonly else "")


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
            ro = ",readonly=on" if drive.readonly else ""
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
                    argv += ["-device", f"pcie-root-port,id={drive.ident}-port,"
                             f"chassis={n + 1},slot={n + 1}"]
                    bus = f",bus={drive.ident}-port"
                argv += ["-device", f"virtio-blk-pci,drive={drive.ident}-drive,id={drive.ident}"
                         + bus + boot]
        for disk in m.disks:
            argv += ["-drive", f"file={disk},if=virtio,format=raw,readonly=on"]
    if m.network:
        netdev = "user,id=net0"
        if m.ssh_port is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{m.ssh_port}-:22"
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
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def probe_accel(kernel: Path, initrd: Path, *, timeout: float = 8.0,
                log_dir: Path | None = None) -> str:
    """'kvm' if a KVM guest boots KERNEL+INITRD to its first userspace line within
    TIMEOUT seconds, else 'tcg'. MIXOS_ACCEL=kvm|tcg overrides the probe."""
    forced = os.environ.get("MIXOS_ACCEL", "")
    if forced in ("kvm", "tcg"):
        return forced
    if forced:
        raise ValueError(f"MIXOS_ACCEL={forced!r}: use 'kvm' or 'tcg'")
    if not kvm_usable():
        return "tcg"
    from mixbuild.vm.guest import VM, VMError  # vm imports this module

    probe = Machine(accel="kvm", kernel=kernel, initrd=initrd, network=False,
                    append="console=ttyS0,115200 quiet mixos.probe")
    console = (log_dir or Path("/tmp")) / f"mixos-kvm-probe-{os.getpid()}.log"
    try:
        with VM(probe, console) as vm:
            vm.wait_for(PROBE_LINE, timeout)
            return "kvm"
    except VMError as e:
        log(f"KVM probe: the guest did not reach userspace ({str(e).splitlines()[0]}); "
            "using TCG")
        return "tcg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild qemu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iso", type=Path)
    parser.add_argument("--kernel", type=Path)
    parser.add_argument("--initrd", type=Path)
    parser.add_argument("--append", help="kernel arguments for --kernel (default: those of "
                        "the ISO's normal menu entry)")
    parser.add_argument("--disk", type=Path, action="append", default=[],
                        help="raw image on virtio-blk (e.g. a NoCloud seed); repeatable")
    parser.add_argument("--drive", type=Path, action="append", default=[],
                        help="a writable virtio disk (qcow2 when named .qcow2 or .viso, else "
                             "raw), e.g. the VISO; booted when there is no --iso/--kernel")
    parser.add_argument("--memory", type=int, default=256, help="MiB")
    parser.add_argument("--ssh-port", type=int, help="forward 127.0.0.1:PORT to the guest's 22")
    parser.add_argument("--uefi", action="store_true")
    parser.add_argument("--machine", choices=MACHINES,
                        help=f"QEMU machine (default: {DIRECT_MACHINE} for --kernel boots, "
                             "q35 for the ISO and for --uefi/--graphics)")
    parser.add_argument("--graphics", action="store_true")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--print", action="store_true", help="print the command, don't run it")
    parser.add_argument("--probe", action="store_true", help="print the accelerator that works")
    args = parser.parse_args(argv)

    kernel = args.kernel or ARTIFACTS / "kernel" / "bzImage"
    initrd = args.initrd or ARTIFACTS / "initramfs.img"
    if args.probe:
        print(probe_accel(kernel, initrd))
        return 0
    accel = args.accel
    if accel == "auto":
        accel = probe_accel(kernel, initrd) if kernel.exists() and initrd.exists() else "tcg"
    append = args.append
    if append is None and args.kernel:
        from mixbuild.images import iso

        append = iso.kernel_args(iso.entry_args("normal"))
    machine = args.machine or (DIRECT_MACHINE if args.kernel and not (args.uefi or args.graphics)
                               else "q35")
    m = Machine(memory_mb=args.memory, accel=accel, iso=args.iso, kernel=args.kernel,
                machine=machine,
                initrd=args.initrd, append=append or "",
                disks=tuple(args.disk), ssh_port=args.ssh_port, uefi=args.uefi,
                drives=tuple(Drive(d, "qcow2" if d.suffix in (".qcow2", ".viso") else "raw")
                             for d in args.drive),
                graphics=args.graphics, serial="mon:stdio")
    argv_q = command(m)
    if args.print:
        print(shlex.join(argv_q))
        return 0
    if shutil.which(QEMU) is None:
        print(f"mixbuild qemu: {QEMU} not found; run 'make deps'", file=sys.stderr)
        return 1
    os.execvp(argv_q[0], argv_q)
    return 1  # not reached

