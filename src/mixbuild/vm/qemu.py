"""The probe that decides between KVM and TCG, and `mixbuild qemu`.

Every QEMU command line of the project is built by mixboot.qemu (shipped in
MixOS, for `mix viso boot`) from one frozen `Machine` value; its names are
re-exported here, where the VM tests and benchmarks have always found them.

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
import sys
from pathlib import Path

from mixboot.qemu import (
    DIRECT_MACHINE,
    MACHINES,
    OVMF_CANDIDATES,
    QBOOT,
    QEMU,
    Drive,
    Machine,
    command,
    free_port,
    kvm_usable,
    ovmf_firmware,
)
from mixbuild.common import ARTIFACTS, log

__all__ = ["DIRECT_MACHINE", "MACHINES", "OVMF_CANDIDATES", "PROBE_LINE", "QBOOT", "QEMU",
           "Drive", "Machine", "command", "free_port", "kvm_usable", "main", "ovmf_firmware",
           "probe_accel"]

PROBE_LINE = "mixos-initramfs: probe: userspace reached"


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

