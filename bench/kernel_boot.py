"""Benchmark: time to userspace of the MixOS kernel against Debian's cloud kernel, under TCG.

Both kernels boot, alternately, the same trivial BusyBox initramfs whose /init prints the
guest's uptime and powers off. QEMU runs with -accel tcg -nodefaults, 256 MB, direct
kernel boot, the serial console on a pipe. For each boot it records:

  wall       seconds from starting QEMU to the init's first line on the serial console
             (QEMU start-up, firmware, kernel load and decompression, kernel boot)
  uptime     the guest's own /proc/uptime when /init starts (kernel boot only)
  exit       seconds from starting QEMU until it exited after the ACPI poweroff

and prints the medians per kernel and the ratios MixOS / Debian (target: <= 0.6).

Debian's kernel is linux-image-cloud-amd64's dependency, fetched with `apt-get download`
into $MIXOS_CACHE/bench/ and unpacked with dpkg-deb. The MixOS kernel is
artifacts/kernel/bzImage (`make kernel`).

Usage: PYTHONPATH=src .venv/bin/python bench/kernel_boot.py [--rounds 5] [--hardened]
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mixbuild.images.cpio import Entry, newc_archive

PROJECT = Path(__file__).resolve().parents[1]
MIXOS_KERNEL = PROJECT / "artifacts" / "kernel" / "bzImage"
HARDENING_CMDLINE = PROJECT / "configs" / "kernel" / "cmdline"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
BASE_CMDLINE = "console=ttyS0 panic=-1"
MARKER = "MIXOS-BENCH-USERSPACE"
BOOT_TIMEOUT = 60.0

INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up idle < /proc/uptime
echo "{MARKER} uptime=$up"
/bin/busybox poweroff -f
"""


class BenchError(Exception):
    """What failed, and what to do."""


def run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise BenchError(f"command failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def cache_dir() -> Path:
    return Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos")) / "bench"


def debian_cloud_kernel() -> tuple[Path, str]:
    """vmlinuz of the linux-image-*-cloud-amd64 package linux-image-cloud-amd64 depends on."""
    depends = run(["apt-cache", "depends", "linux-image-cloud-amd64"])
    match = re.search(r"Depends: (linux-image-[\w.+-]+-cloud-amd64)", depends)
    if not match:
        raise BenchError("apt-cache knows no linux-image-cloud-amd64; run 'apt-get update'")
    package = match[1]
    root = cache_dir() / package
    kernels = sorted(root.glob("boot/vmlinuz-*"))
    if not kernels:
        download = cache_dir() / "debs"
        download.mkdir(parents=True, exist_ok=True)
        run(["apt-get", "download", package], cwd=download)
        debs = sorted(download.glob(f"{package}_*.deb"))
        if not debs:
            raise BenchError(f"apt-get download {package} left no .deb in {download}")
        tmp = root.with_name(root.name + ".tmp")
        run(["rm", "-rf", str(tmp)])
        run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)])
        tmp.rename(root)
        kernels = sorted(root.glob("boot/vmlinuz-*"))
    return kernels[-1], package


def busybox_initramfs(out: Path) -> Path:
    """An uncompressed initramfs: static BusyBox, /dev/console, and the timing /init."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} missing; install busybox-static ('make deps')")
    entries = [
        Entry.directory("bin"), Entry.directory("dev"), Entry.directory("proc"),
        Entry.chardev("dev/console", 5, 1),
        Entry.file("bin/busybox", BUSYBOX.read_bytes(), 0o755),
        Entry.file("init", INIT.encode(), 0o755),
    ]
    out.write_bytes(newc_archive(entries, mtime=0))
    return out


@dataclass(frozen=True)
class Boot:
    wall: float  # QEMU start -> first userspace line
    uptime: float  # guest uptime at /init
    exit: float  # QEMU start -> QEMU exited after poweroff


def boot(kernel: Path, initrd: Path, cmdline: str) -> Boot:
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config",
           "-machine", "pc", "-m", "256", "-display", "none", "-serial", "stdio",
           "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = b""
    wall = uptime = None
    try:
        while time.monotonic() - start < BOOT_TIMEOUT:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                output += chunk
                if wall is None and MARKER.encode() in output:
                    wall = time.monotonic() - start
                match = re.search(rb"%s uptime=([\d.]+)\r?\n" % MARKER.encode(), output)
                if match and uptime is None:
                    uptime = float(match[1])
        proc.wait(timeout=max(1.0, BOOT_TIMEOUT - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ended = time.monotonic() - start
    if wall is None or uptime is None:
        tail = "\n".join(output.decode(errors="replace").splitlines()[-30:])
        raise BenchError(f"{kernel}: no userspace line within {BOOT_TIMEOUT:.0f} s "
                         f"({shlex.join(cmd)}); console tail:\n{tail}")
    return Boot(wall, uptime, ended)


def median(boots: list[Boot], field: str) -> float:
    return statistics.median(getattr(b, field) for b in boots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kernel", type=Path, default=MIXOS_KERNEL, help="MixOS bzImage")
    parser.add_argument("--hardened", action="store_true",
                        help="also boot MixOS with configs/kernel/cmdline appended")
    args = parser.parse_args(argv)
    try:
        if not args.kernel.exists():
            raise BenchError(f"{args.kernel} missing; run 'make kernel'")
        debian, package = debian_cloud_kernel()
        initrd = busybox_initramfs(cache_dir() / "busybox-init.cpio")
        runs: dict[str, tuple[Path, str]] = {
            "mixos": (args.kernel, BASE_CMDLINE),
            "debian-cloud": (debian, BASE_CMDLINE),
        }
        if args.hardened:
            hardening = HARDENING_CMDLINE.read_text().strip()
            runs["mixos+hardening-args"] = (args.kernel, f"{BASE_CMDLINE} {hardening}")
        print(f"MixOS kernel:  {args.kernel} ({args.kernel.stat().st_size / 1e6:.2f} MB)")
        print(f"Debian kernel: {debian} ({package}, {debian.stat().st_size / 1e6:.2f} MB)")
        print(f"initramfs:     {initrd} ({initrd.stat().st_size / 1e6:.2f} MB, uncompressed)")
        print(f"cmdline:       {BASE_CMDLINE}; QEMU -accel tcg -nodefaults -m 256, "
              f"{args.rounds} rounds alternating\n")
        results: dict[str, list[Boot]] = {name: [] for name in runs}
        for round_no in range(1, args.rounds + 1):
            for name, (kernel, cmdline) in runs.items():
                result = boot(kernel, initrd, cmdline)
                results[name].append(result)
                print(f"round {round_no} {name:22} wall {result.wall:5.2f} s  "
                      f"uptime {result.uptime:5.2f} s  exit {result.exit:5.2f} s", flush=True)
        print("\nmedians:")
        for name, boots in results.items():
            print(f"  {name:22} wall {median(boots, 'wall'):5.2f} s  "
                  f"uptime {median(boots, 'uptime'):5.2f} s  exit {median(boots, 'exit'):5.2f} s")
        mix, deb = results["mixos"], results["debian-cloud"]
        wall_ratio = median(mix, "wall") / median(deb, "wall")
        uptime_ratio = median(mix, "uptime") / median(deb, "uptime")
        print(f"\nratio MixOS/Debian, time to userspace: wall {wall_ratio:.2f}, "
              f"uptime {uptime_ratio:.2f} (target <= 0.60)")
    except BenchError as error:
        print(f"kernel_boot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
