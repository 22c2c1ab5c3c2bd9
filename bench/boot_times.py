"""Boot time of MixOS under QEMU, stage by stage, from the serial console.

Boots the ISO (firmware + GRUB, on q35) and the kernel directly (-kernel/-initrd,
ISO attached for the root image, on QEMU's microvm machine), with --viso the
VISO from its disk (through a throw-away qcow2 overlay, as the seed's
-drive line says), with --sdisk the SDISK (its default image, the ISO), and with
--vram a direct boot with VRAM=on, several times each, alternating, and prints for
each milestone the minimum and median seconds since QEMU started. The minimum
is the number to compare: on a shared host, other work only ever adds time.

    PYTHONPATH=src .venv/bin/python bench/boot_times.py --runs 5
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --machine pc --runs 3
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --direct-machine microvm --direct-machine q35
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --against ../old/artifacts  # A/B
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --no-iso --against A --against B  # kernels
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --viso --uefi --no-direct  # ISO vs VISO
    PYTHONPATH=src .venv/bin/python bench/boot_times.py --sdisk --uefi --vram      # SDISK, VRAM

Milestones (the first console line that marks each):
    grub      GRUB runs its menu file         (its "... boot menu (VRAM ..." line, on a disk
                                              "(previous kernel ..."; the menu itself stays
                                              hidden, see iso.MENU_TIMEOUT)
    kernel    the kernel's console is up      ("Linux version"; absent: the menu's
                                              entries boot with "quiet")
    initramfs /init runs                      ("mixos-initramfs:")
    vram      VRAM starts copying             ("VRAM: copying"; init - vram is the copy)
    init      switch_root to BusyBox init     ("root image mounted", on a disk "root file
                                              system ... mounted")
    login     the serial getty prompts        ("login:")

With --icount the direct boots run under QEMU's instruction counting (-icount
shift=0,sleep=off: the guest clock advances 1 ns per instruction executed, idle
time is skipped) with mixos.debug, and three more rows give the guest's own
clock at: /init looking for the boot medium (g-initramfs), rcS done setting the
system up, just before the login prompt (g-setup), and every service started
(g-services). Those are instruction counts, not seconds, and do not depend on
how busy the host is: what to compare two kernels with on a shared host
(docs/kernel.md). The wall-clock rows stay, slower under -icount.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mixbuild.common import ARTIFACTS
from mixbuild.images import iso as iso_stage
from mixbuild.vm.guest import VM, VMError
from mixbuild.vm.qemu import DIRECT_MACHINE, MACHINES, Drive, Machine, probe_accel

MILESTONES = [
    ("grub", r"boot menu \((VRAM|previous|every image)"),
    ("kernel", r"Linux version"),
    ("initramfs", r"mixos-initramfs:"),
    ("vram", r"VRAM: copying"),
    ("init", r"root (image|file system \S+) mounted"),
    ("login", r"login: ?"),
]
# With --icount (mixos.debug): lines carrying the guest's /proc/uptime.
GUEST_MILESTONES = [
    ("g-initramfs", r"mixos-initramfs: ([0-9.]+) s: looking"),
    ("g-setup", r"rcS: ([0-9.]+) s: system set up"),
    ("g-services", r"rcS: ([0-9.]+) s: services started"),
]
ICOUNT = ("-icount", "shift=0,sleep=off")


def fresh_overlay(machine: Machine) -> None:
    """Every VISO boot starts from the image as built (its first boot, as an instance's)."""
    for drive in machine.drives:
        base = Path(str(drive.path).removesuffix(".overlay.qcow2"))
        fmt = "raw" if base.suffix == ".sdisk" else "qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
                        str(base.absolute()), str(drive.path)], check=True)


def boot_once(machine: Machine, log: Path, timeout: float) -> dict[str, float | None]:
    fresh_overlay(machine)
    with VM(machine, log) as vm:
        vm.wait_for(r"login: ?", timeout)
        times = {name: vm.arrival_of(pattern) for name, pattern in MILESTONES}
        if ICOUNT[0] in machine.extra:
            vm.wait_for(GUEST_MILESTONES[-1][1], timeout)
            for name, pattern in GUEST_MILESTONES:
                found = re.search(pattern, vm.console())
                times[name] = float(found[1]) if found else None
        return times


def summarize(runs: list[dict[str, float | None]]) -> dict[str, dict[str, float] | None]:
    summary: dict[str, dict[str, float] | None] = {}
    for name, _ in MILESTONES + GUEST_MILESTONES:
        if not any(name in r for r in runs):
            continue
        values = [r[name] for r in runs if r.get(name) is not None]
        summary[name] = None if not values else {
            "min": round(min(v for v in values if v is not None), 2),
            "median": round(statistics.median(v for v in values if v is not None), 2)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iso", type=Path,
                        default=ARTIFACTS / f"mixos-{iso_stage.project_version()}.iso")
    parser.add_argument("--kernel", type=Path, default=ARTIFACTS / "kernel" / "bzImage")
    parser.add_argument("--initrd", type=Path, default=ARTIFACTS / "initramfs.img")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", type=int, default=256)
    parser.add_argument("--machine", choices=("pc", "q35"), default="q35",
                        help="the machine the ISO boots on")
    parser.add_argument("--direct-machine", choices=MACHINES, action="append",
                        help=f"the machine the direct kernel boots use (default {DIRECT_MACHINE}); "
                             "repeat it to boot on each, alternating")
    parser.add_argument("--viso", nargs="?", type=Path, metavar="VISO",
                        const=ARTIFACTS / f"mixos-{iso_stage.project_version()}.viso",
                        help="also boot the VISO (default artifacts/mixos-<version>.viso)")
    parser.add_argument("--sdisk", nargs="?", type=Path, metavar="SDISK",
                        const=ARTIFACTS / f"mixos-{iso_stage.project_version()}.sdisk",
                        help="also boot the SDISK's default image (default "
                             "artifacts/mixos-<version>.sdisk)")
    parser.add_argument("--vram", action="store_true",
                        help="also boot the kernel directly with VRAM=on")
    parser.add_argument("--uefi", action="store_true",
                        help="also boot the ISO (and the VISO, the SDISK) with OVMF")
    parser.add_argument("--no-direct", action="store_true", help="no direct kernel boots")
    parser.add_argument("--no-iso", action="store_true",
                        help="no ISO boots (to compare kernels: an ISO carries its own)")
    parser.add_argument("--icount", action="store_true",
                        help="direct boots count instructions (see above): guest-clock rows "
                             "that do not depend on the host's load")
    parser.add_argument("--vga", action="store_true",
                        help="direct boots on q35/pc get a VGA device (-vga std), as a VM with "
                             "a screen has (the kernel's screen console then draws on it)")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--against", type=Path, metavar="ARTIFACTS", action="append",
                        help="another artifacts directory (say, a build of an earlier commit): "
                             "its ISO, kernel and initramfs boot alternately with these, and "
                             "both are reported (as @base; repeated, as @DIRECTORY-NAME)")
    args = parser.parse_args(argv)
    direct_machines = args.direct_machine or [DIRECT_MACHINE]
    image_sets = {"": (args.iso, args.kernel, args.initrd)}
    for other in args.against or []:
        label = "@base" if len(args.against) == 1 else f"@{other.name}"
        if label in image_sets:
            print(f"boot_times: two --against directories are named {other.name}", file=sys.stderr)
            return 2
        image_sets[label] = (other / args.iso.name, other / "kernel" / "bzImage",
                             other / "initramfs.img")
    for images in image_sets.values():
        for path in images:
            if not path.is_file():
                print(f"boot_times: {path} not found; run 'make iso'", file=sys.stderr)
                return 1
    accel = "tcg" if args.icount else probe_accel(args.kernel, args.initrd)
    direct_args = iso_stage.kernel_args(iso_stage.entry_args("normal"),
                                        extra="mixos.debug" if args.icount else "")
    direct_extra = ICOUNT if args.icount else ()
    vga = ("-vga", "std") if args.vga else ()
    modes: dict[str, Machine] = {}
    tmpdir = tempfile.TemporaryDirectory(prefix="mixos-boot-bench-")
    for suffix, (iso, kernel, initrd) in image_sets.items():
        if not args.no_iso:
            modes["iso" + suffix] = Machine(accel=accel, memory_mb=args.memory,
                                            machine=args.machine, iso=iso)
        if args.uefi and not args.no_iso:
            modes["iso-uefi" + suffix] = Machine(accel=accel, memory_mb=args.memory, iso=iso,
                                                 uefi=True)
        for kind, image in (("viso", args.viso), ("sdisk", args.sdisk)):
            if image is None or suffix:
                continue
            disk = Path(tmpdir.name) / f"{image.name}.overlay.qcow2"
            (Path(tmpdir.name) / image.name).symlink_to(image.absolute())
            for uefi in (False, True) if args.uefi else (False,):
                modes[f"{kind}-uefi" if uefi else kind] = Machine(
                    accel=accel, memory_mb=args.memory, drives=(Drive(disk),), uefi=uefi)
        for direct in [] if args.no_direct else direct_machines:
            name = "direct" if len(direct_machines) == 1 else f"direct-{direct}"
            modes[name + suffix] = Machine(
                accel=accel, memory_mb=args.memory, machine=direct, kernel=kernel,
                initrd=initrd, iso=iso, append=direct_args,
                extra=direct_extra + (vga if direct != "microvm" else ()))
            if args.vram:
                modes[name + "-vram" + suffix] = Machine(
                    accel=accel, memory_mb=args.memory, machine=direct, kernel=kernel,
                    initrd=initrd, iso=iso, append=iso_stage.kernel_args(iso_stage.entry_args("vram")))
    results: dict[str, list[dict[str, float | None]]] = {m: [] for m in modes}
    with tmpdir as tmp:
        for i in range(args.runs):
            for mode, machine in modes.items():
                try:
                    results[mode].append(boot_once(machine, Path(tmp) / f"{mode}-{i}.log",
                                                   args.timeout))
                except VMError as e:
                    print(f"boot_times: {mode} run {i + 1} failed:\n{e}", file=sys.stderr)
                    return 1
    report = {"accel": accel, "machine": args.machine, "direct_machines": direct_machines,
              "runs": args.runs,
              "iso_mb": round(args.iso.stat().st_size / 2**20, 1),
              **({"viso_mb": round(args.viso.stat().st_size / 2**20, 1)} if args.viso else {}),
              **({"sdisk_mb": round(args.sdisk.stat().st_size / 2**20, 1)} if args.sdisk else {}),
              **{mode: summarize(r) for mode, r in results.items()}}
    print(f"accel={accel} machine={args.machine} direct-machine={','.join(direct_machines)} "
          f"runs={args.runs} ISO {report['iso_mb']} MiB")
    print(f"{'milestone':<10}" + "".join(f" {mode + ' min':>14} {mode + ' med':>14}"
                                         for mode in modes))
    for name, _ in MILESTONES + (GUEST_MILESTONES if args.icount else []):
        cells = []
        for mode in modes:
            s = report[mode].get(name)  # type: ignore[union-attr]
            cells += ["-", "-"] if s is None else [f"{s['min']:.2f}", f"{s['median']:.2f}"]
        print(f"{name:<10}" + "".join(f" {c:>14}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
