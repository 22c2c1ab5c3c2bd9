"""`make initramfs`: static BusyBox + the readable /init -> artifacts/initramfs.img.

The archive is a cpio "newc" (see cpio.py) compressed with gzip, reproducible:
the same BusyBox and /init give the same bytes (sorted members, owner 0:0, mtimes
SOURCE_DATE_EPOCH, gzip header without a timestamp).

BusyBox comes from Debian's busybox-static package (fetched once with
`apt-get download` into $MIXOS_CACHE/debs). The MixOS kernel has every driver
needed to boot built in, so the archive holds no modules; `--overlay DIR` adds a
tree (for example /lib/modules and /etc/modules-boot for a modular kernel).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import stat
import sys
import tempfile
from pathlib import Path

from mixbuild.common import (
    ARTIFACTS,
    PROJECT,
    BuildError,
    cache_dir,
    log,
    run,
    source_date_epoch,
    step,
)
from mixbuild.images.cpio import Entry, newc_archive

BUSYBOX_PACKAGE = "busybox-static"
INIT_SCRIPT = PROJECT / "initramfs" / "init"
# Directories /init expects to exist before it mounts anything.
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
SKELETON_DIRS = ["bin", "dev", "etc", "newroot", "proc", "run", "sys", "tmp"]
COMPRESSORS = ("gzip", "xz")


def candidate_version(package: str) -> str:
    out = run(["apt-cache", "policy", package], capture=True).stdout
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise BuildError(f"no installable version of {package} in apt's lists; run 'apt-get update'")


def fetch_deb(package: str) -> Path:
    """The .deb of PACKAGE's candidate version, downloaded once into the cache."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    version = candidate_version(package)
    deb = debs / f"{package}_{version.replace(':', '%3a')}_amd64.deb"
    if not deb.exists():
        run(["apt-get", "download", f"{package}={version}"], cwd=debs, capture=True)
        if not deb.exists():
            raise BuildError(f"apt-get download {package}={version} did not produce {deb}")
    return deb


def busybox_binary(workdir: Path) -> Path:
    deb = fetch_deb(BUSYBOX_PACKAGE)
    run(["dpkg-deb", "-x", deb, workdir])
    binary = workdir / "bin" / "busybox"
    if not binary.is_file():
        raise BuildError(f"{deb.name} has no bin/busybox; is it the static BusyBox package?")
    log(f"busybox from {deb.name}")
    return binary


def applets(busybox: Path) -> list[str]:
    names = run([busybox, "--list"], capture=True).stdout.split()
    if "sh" not in names or "switch_root" not in names:
        raise BuildError(f"{busybox} lacks the sh or switch_root applet /init needs")
    return sorted(n for n in names if n != "busybox" and "/" not in n)


def tree_entries(root: Path) -> list[Entry]:
    """Entries for every file, directory and symlink under ROOT (modes kept)."""
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        perm = stat.S_IMODE(st.st_mode)
        if path.is_symlink():
            entries.append(Entry.symlink(rel, str(path.readlink())))
        elif path.is_dir():
            entries.append(Entry.directory(rel, perm))
        elif path.is_file():
            entries.append(Entry.file(rel, path.read_bytes(), perm))
        else:
            raise BuildError(f"{path}: only files, directories and symlinks can be added")
    return entries


def initramfs_entries(busybox: Path, init: Path, overlay: Path | None) -> list[Entry]:
    entries = [Entry.directory(d) for d in SKELETON_DIRS]
    # The kernel opens /dev/console for /init's stdin/stdout/stderr before
    # anything is mounted, so the node must be in the archive.
    entries.append(Entry.chardev("dev/console", 5, 1))
    # The /dev symlinks devtmpfs does not make; /init copies them into /dev.
    entries.append(Entry.directory("etc/devlinks"))
    entries += [Entry.symlink(f"etc/devlinks/{name}", target) for name, target in DEV_LINKS]
    entries.append(Entry.file("init", init.read_bytes(), 0o755))
    entries.append(Entry.file("bin/busybox", busybox.read_bytes(), 0o755))
    entries += [Entry.symlink(f"bin/{name}", "busybox") for name in applets(busybox)]
    if overlay is not None:
        extra = tree_entries(overlay)
        replaced = {e.path for e in extra if not stat.S_ISDIR(e.mode)}
        known_dirs = {e.path for e in entries if stat.S_ISDIR(e.mode)}
        entries = [e for e in entries if e.path not in replaced]
        entries += [e for e in extra if e.path not in known_dirs]
    return entries


def compress(data: bytes, method: str) -> bytes:
    if method == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "xz":
        # The kernel's xz decoder only knows CRC32 checks.
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    raise BuildError(f"unknown compression {method!r}; use one of {', '.join(COMPRESSORS)}")


def build(output: Path, *, init: Path = INIT_SCRIPT, overlay: Path | None = None,
          compression: str = "gzip") -> Path:
    with step(f"Building the initramfs {output}"):
        with tempfile.TemporaryDirectory(prefix="mixos-initramfs-") as tmp:
            busybox = busybox_binary(Path(tmp))
            entries = initramfs_entries(busybox, init, overlay)
        archive = newc_archive(entries, source_date_epoch())
        image = compress(archive, compression)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = output.with_name(output.name + ".tmp")
        tmp_out.write_bytes(image)
        tmp_out.replace(output)
        log(f"{len(entries)} members, {len(archive)} bytes -> {len(image)} bytes ({compression}), "
            f"sha256 {hashlib.sha256(image).hexdigest()[:16]}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild initramfs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=ARTIFACTS / "initramfs.img")
    parser.add_argument("--init", type=Path, default=INIT_SCRIPT, help="the /init script")
    parser.add_argument("--overlay", type=Path, help="a directory tree to add to the archive")
    parser.add_argument("--compression", choices=COMPRESSORS, default="gzip")
    args = parser.parse_args(argv)
    try:
        build(args.output, init=args.init, overlay=args.overlay, compression=args.compression)
    except BuildError as e:
        print(f"mixbuild initramfs: {e}", file=sys.stderr)
        return 1
    return 0
