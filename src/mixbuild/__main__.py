"""mixbuild: the MixOS image builder. One sub-command per pipeline stage."""

from __future__ import annotations

import importlib
import sys

# stage name -> module implementing main(argv) -> int
STAGES = {
    "deps": "mixbuild.deps",
    "kernel": "mixbuild.images.kernel",
    "packages": "mixbuild.packages.repo",
    "rootfs": "mixbuild.images.rootfs",
    "initramfs": "mixbuild.images.initramfs",
    "iso": "mixbuild.images.iso",
    "bootloader": "mixbuild.images.bootloader",
    "viso": "mixbuild.images.viso",
    "sdisk": "mixbuild.images.sdisk",
    "qemu": "mixbuild.vm.qemu",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print("usage: mixbuild STAGE [ARGS...]\nstages: " + ", ".join(STAGES), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(STAGES[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
