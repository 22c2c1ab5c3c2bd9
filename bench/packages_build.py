"""Build times of the packages and rootfs stages, in a scratch copy of the project.

Copies src/, packages/, configs/, pyproject.toml and the kernel, initramfs and GRUB
products into a temporary directory with its own empty MIXOS_CACHE (so the numbers
include every download), then times, in that copy:

    cold      `mixbuild packages` with an empty cache (apt-get/pip downloads too)
    warm      `mixbuild packages` again, nothing changed
    one       one recipe edited (busybox: a comment added), `mixbuild packages`
    rootfs    `mixbuild rootfs` after that (mix install + mksquashfs)
    rootfs=   `mixbuild rootfs` again, nothing changed (squashfs kept)

and prints them with the squashfs size. The working tree is not touched.

    PYTHONPATH=src .venv/bin/python bench/packages_build.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def copy_project(dest: Path) -> None:
    for name in ("src", "packages", "configs"):
        shutil.copytree(PROJECT / name, dest / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copyfile(PROJECT / "pyproject.toml", dest / "pyproject.toml")
    # What `make packages` builds first (Makefile: kernel, initramfs, bootloader):
    # the linux and mixos-boot recipes copy them.
    for name in ("kernel", "grub"):
        if (PROJECT / "artifacts" / name).is_dir():
            shutil.copytree(PROJECT / "artifacts" / name, dest / "artifacts" / name)
    for name in ("initramfs.img", "grub.inputs"):
        if (PROJECT / "artifacts" / name).is_file():
            shutil.copyfile(PROJECT / "artifacts" / name, dest / "artifacts" / name)


def timed(project: Path, cache: Path, stage: str) -> float:
    env = dict(os.environ, MIXOS_CACHE=str(cache), PYTHONPATH=str(project / "src"),
               SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "1767225600"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mixbuild", stage], cwd=project, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=1800, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"mixbuild {stage} failed in {project}:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mixos-bench-packages-"))
    try:
        project, cache = scratch / "project", scratch / "cache"
        copy_project(project)
        cache.mkdir()
        results = {"cold": timed(project, cache, "packages"),
                   "warm": timed(project, cache, "packages")}
        with (project / "packages/busybox/recipe.toml").open("a") as f:
            f.write("# edited by bench/packages_build.py\n")
        results["one"] = timed(project, cache, "packages")
        results["rootfs"] = timed(project, cache, "rootfs")
        results["rootfs="] = timed(project, cache, "rootfs")
        squashfs = project / "artifacts/root.squashfs"
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
        for name, seconds in results.items():
            print(f"  {name:<9} {seconds:7.1f} s")
        print(f"  one recipe changed, packages + rootfs: "
              f"{results['one'] + results['rootfs']:.1f} s (target: make all < 120 s)")
        print(f"  root.squashfs {squashfs.stat().st_size / 1048576:.2f} MiB")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
