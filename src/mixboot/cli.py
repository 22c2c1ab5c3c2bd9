"""mixos-boot: keep an installed MixOS system's kernels and GRUB menu in order.

    mixos-boot update      link the installed kernel into /boot, rewrite the menu;
                           a new kernel is booted once on trial (the linux
                           package's scripts run this)
    mixos-boot mark-good   the running kernel reached userspace: make it the
                           default (the boot's S90bootok step runs this)
    mixos-boot status      kernels installed, in /boot, good, on trial, running

Exit status: 0 done (or nothing to do), 1 failed (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mixboot import kernels, sdisk, vram


def _cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixos-boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="the installed system's root (default /)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update", help="link the installed kernel into /boot and rewrite the menu")
    sub.add_parser("mark-good", help="make the running kernel the default")
    sub.add_parser("status", help="show the kernels and the boot state (JSON)")
    args = parser.parse_args(argv)
    try:
        if args.command == "update":
            print(f"mixos-boot: {kernels.update(args.root)}")
        elif args.command == "mark-good":
            env = sdisk.boot_env()
            if args.root == Path("/") and env.get("MIXOS_VRAM") == vram.ON:
                # Running in RAM: the kernel is good for the disk's next boots.
                with vram.disk_root(env) as root:
                    print(f"mixos-boot: {kernels.mark_good(root, _cmdline())}")
            else:
                print(f"mixos-boot: {kernels.mark_good(args.root, _cmdline())}")
        else:
            print(json.dumps(kernels.status(args.root, _cmdline()), indent=2))
    except (kernels.BootError, vram.VramError, OSError, ValueError) as e:
        print(f"mixos-boot: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
