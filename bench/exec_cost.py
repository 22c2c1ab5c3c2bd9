"""Benchmark: the cost of one program start of each BusyBox build, under TCG.

Boots the MixOS kernel with a small initramfs holding three BusyBox binaries
and a shell loop that runs the `true` applet of each N times, alternating the
builds round by round, and reads the guest's /proc/uptime around each loop:

  dynamic     Debian's busybox (PIE, links libc.so.6 and libresolv.so.2)
  static-pie  MixOS's build (packages/busybox: static PIE, full RELRO)
  static      Debian's busybox-static (not PIE), for reference

The driving shell is the same binary for all three (the static PIE), so only
the fork+exec of the measured binary differs. Prints per build the median
milliseconds per start and the ratio to the dynamic build.

Usage: PYTHONPATH=src .venv/bin/python bench/exec_cost.py [--runs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mixbuild.common import ARTIFACTS
from mixbuild.images.cpio import Entry, newc_archive
from mixbuild.packages import debian

KERNEL = ARTIFACTS / "kernel" / "bzImage"
STATIC_PIE = ARTIFACTS / "rootfs" / "usr" / "bin" / "busybox"
DEBIAN_STATIC = Path("/bin/busybox")  # busybox-static, installed by 'make deps'
BUILDS = ("dynamic", "static-pie", "static")
GLIBC_FILES = ("lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libresolv.so.2",
               "lib64/ld-linux-x86-64.so.2")

INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
r=1
while [ $r -le {rounds} ]; do
    for b in {builds}; do
        read t0 rest < /proc/uptime
        i=0
        while [ $i -lt {runs} ]; do /$b/true; i=$((i + 1)); done
        read t1 rest < /proc/uptime
        echo "EXEC-COST $b $t0 $t1"
    done
    r=$((r + 1))
done
echo EXEC-COST-DONE
/bin/busybox poweroff -f
"""


def glibc_root(deb_root: Path, rel: str) -> Path:
    """REL in the unpacked libc6 .deb (Debian 12 ships it under /lib or /usr/lib)."""
    for candidate in (deb_root / rel, deb_root / "usr" / rel):
        if candidate.exists():
            return candidate.resolve()
    raise SystemExit(f"exec_cost: {rel} not in {deb_root}")


def initramfs(out: Path, runs: int, rounds: int) -> dict[str, int]:
    """Write the initramfs; return the size of each measured binary in bytes."""
    if not STATIC_PIE.is_file():
        raise SystemExit(f"exec_cost: {STATIC_PIE} missing; run 'make rootfs'")
    if not DEBIAN_STATIC.is_file():
        raise SystemExit(f"exec_cost: {DEBIAN_STATIC} missing; install busybox-static")
    debs = debian.fetch(["busybox", "libc6"])
    dynamic = debs["busybox"][1] / "bin" / "busybox"
    binaries = {"dynamic": dynamic.read_bytes(), "static-pie": STATIC_PIE.read_bytes(),
                "static": DEBIAN_STATIC.read_bytes()}
    entries = [Entry.directory(d) for d in ("bin", "dev", "proc", "lib", "lib64",
                                            "lib/x86_64-linux-gnu", *BUILDS)]
    entries.append(Entry.chardev("dev/console", 5, 1))
    entries.append(Entry.file("bin/busybox", binaries["static-pie"], 0o755))
    for rel in GLIBC_FILES:
        entries.append(Entry.file(rel, glibc_root(debs["libc6"][1], rel).read_bytes(), 0o755))
    for build, data in binaries.items():
        entries.append(Entry.file(f"{build}/busybox", data, 0o755))
        entries.append(Entry.symlink(f"{build}/true", "busybox"))
    script = INIT.format(rounds=rounds, runs=runs, builds=" ".join(BUILDS))
    entries.append(Entry.file("init", script.encode(), 0o755))
    out.write_bytes(newc_archive(entries, mtime=0))
    return {build: len(data) for build, data in binaries.items()}


def boot(initrd: Path, timeout: float, append: str) -> str:
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config",
           "-machine", "pc", "-m", "256", "-display", "none", "-serial", "stdio",
           "-no-reboot", "-kernel", str(KERNEL), "-initrd", str(initrd),
           "-append", f"console=ttyS0 panic=-1 quiet {append}".strip()]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"exec_cost: no result within {timeout:.0f} s: {shlex.join(cmd)}") from e
    if "EXEC-COST-DONE" not in proc.stdout:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise SystemExit(f"exec_cost: the guest did not finish ({shlex.join(cmd)}):\n{tail}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="starts per loop")
    parser.add_argument("--rounds", type=int, default=5, help="loops per build, alternating")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--append", default="", help="more kernel arguments, e.g. norandmaps "
                        "(no ASLR: shows what address randomization costs under TCG)")
    args = parser.parse_args(argv)
    if not KERNEL.is_file():
        raise SystemExit(f"exec_cost: {KERNEL} missing; run 'make kernel'")
    with tempfile.TemporaryDirectory(prefix="mixos-exec-cost-") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        sizes = initramfs(initrd, args.runs, args.rounds)
        output = boot(initrd, args.timeout, args.append)
    per_start: dict[str, list[float]] = {b: [] for b in BUILDS}
    for build, t0, t1 in re.findall(r"EXEC-COST (\S+) ([\d.]+) ([\d.]+)", output):
        per_start[build].append((float(t1) - float(t0)) * 1000 / args.runs)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{args.rounds} rounds x {args.runs} starts, TCG, load average {load}"
          + (f", kernel arguments: {args.append}" if args.append else ""))
    base = statistics.median(per_start["dynamic"])
    for build in BUILDS:
        values = per_start[build]
        med = statistics.median(values)
        print(f"  {build:<11} {sizes[build] / 1e6:5.2f} MB  {med:6.2f} ms/start (median; "
              f"min {min(values):.2f}, max {max(values):.2f})  x{med / base:.2f} of dynamic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
