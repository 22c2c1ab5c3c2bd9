"""`make rootfs`: the root filesystem, built BY mix from the signed repository
(so the installed-package database in the image is true), then a reproducible
compressed squashfs.

  artifacts/rootfs/        mix --root artifacts/rootfs -y install mixos-base mixos-installer
  artifacts/root.squashfs  mksquashfs, zstd (or --comp xz), all root-owned,
                           every time stamp = SOURCE_DATE_EPOCH
  artifacts/medium-repo/   the signed repository the ISO carries as /repo: the
                           packages not installed in the image (nginx, openssh...),
                           without the collection of compact recipes (medium = false:
                           curl, git, tcpdump... live in artifacts/repo only)

Everything in the tree comes from a package or is mix's own state under
/var/lib/mix; the two post-install steps remove mix's cached copy of the build
repository's index (drop_build_repo_cache) and rewrite its database compactly
(compact_database). A smoke test runs the image's own
mix in a chroot before the squashfs is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mixbuild.common import (
    ARTIFACTS,
    PACKAGES_DIR,
    PROJECT,
    BuildError,
    cache_dir,
    cache_lock,
    hash_tree,
    log,
    run,
    source_date_epoch,
    step,
)

ROOTFS = ARTIFACTS / "rootfs"
SQUASHFS = ARTIFACTS / "root.squashfs"
REPO = ARTIFACTS / "repo"
MEDIUM_REPO = ARTIFACTS / "medium-repo"
META_PACKAGE = "mixos-base"
# The live system also carries the installer (mixos-install), as Alpine's ISO
# carries setup-alpine: the unattended ISO runs it, and a person can too.
LIVE_PACKAGES = [META_PACKAGE, "mixos-installer"]
# The ISO (with kernel, initramfs and GRUB) must stay within 32 MB.
SQUASHFS_BUDGET = 22 * 1024 * 1024
# zstd by default: the guest reads the root image at boot, and zstd decompresses
# ~15-30x faster than xz (host unsquashfs: 0.02 s against 0.66 s CPU for the whole
# image; under TCG every CPU second is ~10x longer) for ~12% more bytes (14.1 MiB
# against 12.6 MiB); 256 KiB blocks waste less on the small random reads of a boot.
# No xz BCJ filter: the kernel would need CONFIG_XZ_DEC_X86 (make iso checks).
COMPRESSORS = {
    "xz": ["-comp", "xz", "-b", "1M"],
    "zstd": ["-comp", "zstd", "-Xcompression-level", "19", "-b", "256K"],
}


def host_mix(*args: str | Path) -> list[str]:
    """The build host's mix (this checkout's src/mix under the build venv's Python)."""
    return ["env", f"PYTHONPATH={PROJECT / 'src'}", sys.executable, "-m", "mix",
            *[str(a) for a in args]]


def trusted_keys(tmp: Path) -> Path:
    """A keys directory holding only the public half of the repository key."""
    pub = cache_dir() / "keys" / "mixos-repo.pub"
    if not pub.exists():
        raise BuildError(f"{pub} does not exist; run 'make packages' first")
    keys = tmp / "keys"
    keys.mkdir()
    shutil.copyfile(pub, keys / pub.name)
    return keys


def install(root: Path, packages: list[str]) -> None:
    if not (REPO / "index.json").exists():
        raise BuildError(f"{REPO}/index.json does not exist; run 'make packages' first")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mixos-rootfs-") as tmp:
        keys = trusted_keys(Path(tmp))
        run(host_mix("--root", root, "--repo", f"file://{REPO}", "--keys-dir", keys,
                     "-y", "install", *packages), capture=True, timeout=900)


def remove(path: Path) -> None:
    """Remove PATH: a directory with what it holds, anything else (a symlink too) alone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def drop_build_repo_cache(root: Path) -> None:
    """A post-install step: mix keeps a copy of the index of the repository it
    installed from under var/lib/mix/repos/<id of file:///.../artifacts/repo> (and the
    newest index time seen from that URL, for rollback protection). In the
    image that repository does not exist (/etc/mix/repositories names the medium's),
    and the copy carries the index's signing time, which would make the squashfs
    differ on every packages build. `mix update` in the image fetches the real one."""
    repos = root / "var/lib/mix/repos"
    if repos.is_dir():
        for entry in sorted(repos.iterdir()):  # the indexes, and the newest-seen record
            remove(entry)


def collection() -> tuple[str, ...]:
    """The recipes with medium = false (the collection, docs/packages.md): they live in
    artifacts/repo only, never on a boot medium."""
    from mixbuild.packages.recipe import load_recipes

    return tuple(sorted(n for n, r in load_recipes(PACKAGES_DIR).items() if not r.medium))


def off_medium() -> tuple[str, ...]:
    """The packages the live medium does not carry: the kernel (the medium boots its
    own) and the collection."""
    return ("linux", *collection())


def compact_database(root: Path) -> None:
    """Rewrite ROOT's installed.db with `VACUUM INTO`: the same rows in a fresh file.
    The install's journal leaves free pages whose places depend on the build's paths
    (two checkouts gave files of one size but different free-page lists), and the
    copy is 2.5 times smaller (733 -> 299 KiB)."""
    import sqlite3

    db = root / "var/lib/mix/installed.db"
    fresh = db.with_name(db.name + ".compact")
    fresh.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    try:
        con.execute("VACUUM INTO ?", (str(fresh),))
    finally:
        con.close()
    os.chmod(fresh, db.stat().st_mode & 0o7777)
    os.replace(fresh, db)


def medium_repo(root: Path | None, out: Path, exclude: tuple[str, ...] | None = None) -> int:
    """A signed repository for the boot medium (the ISO's /repo, which the image's
    /etc/mix/repositories names): an index of every package except EXCLUDE, and the
    files of those that are not already installed in ROOT (`mix install nginx`
    works offline; installed ones never need their file again; ROOT None: every
    file). Returns its size."""
    from mixbuild.packages.repo import sign_build_index

    if exclude is None:
        exclude = off_medium()
    index = json.loads((REPO / "index.json").read_text())
    have = {(p["name"], p["version"]) for p in installed(root)} if root is not None else set()
    entries = [e for e in index["packages"] if e["name"] not in exclude]
    # Unchanged content keeps the old signature (and so the ISO's inputs) as they are.
    key = hashlib.sha256(json.dumps([entries, sorted(have)], sort_keys=True).encode()).hexdigest()
    stamp = out.with_name(out.name + ".key")
    if not (out.is_dir() and stamp.exists() and stamp.read_text() == key):
        stamp.unlink(missing_ok=True)
        # Everything goes but the old index, whose date the new one must not go below.
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            if old.name != "index.json":
                remove(old)
        for e in entries:
            if (e["name"], e["version"]) not in have:
                shutil.copyfile(REPO / e["filename"], out / e["filename"])
        sign_build_index(out, entries)
        stamp.write_text(key)
    return sum(p.stat().st_size for p in out.iterdir())


def installed(root: Path) -> list[dict[str, object]]:
    """What mix says is installed in ROOT, with installed sizes from the repo index."""
    out = run(host_mix("--root", root, "--json", "list", "--installed"), capture=True).stdout
    index = json.loads((REPO / "index.json").read_text())
    sizes = {(e["name"], e["version"]): e["installed_size"] for e in index["packages"]}
    pkgs = json.loads(out)
    for p in pkgs:
        p["installed_size"] = sizes.get((p["name"], p["version"]), 0)
    return list(pkgs)


def smoke_test(root: Path) -> None:
    """The image's own python3 and mix run in a chroot."""
    if os.geteuid() != 0:
        log("not root: skipping the chroot smoke test")
        return
    out = run(["chroot", root, "/usr/bin/mix", "list", "--installed"], capture=True,
              env={"PATH": "/usr/sbin:/usr/bin"}).stdout
    if META_PACKAGE not in out:
        raise BuildError(f"chroot {root} /usr/bin/mix list does not show {META_PACKAGE}:\n{out}")


def squash_key(root: Path, comp: str) -> str:
    """What the squashfs bytes depend on: the tree's names, modes, link targets and
    contents (owners and times are fixed by the options), the options, the tool."""
    h = hashlib.sha256()
    version = run(["mksquashfs", "-version"], capture=True).stdout.splitlines()[0]
    h.update(f"{version}\n{COMPRESSORS[comp]}\n{source_date_epoch()}\n".encode())
    hash_tree(h, root, ignore=())
    return h.hexdigest()


def squash(root: Path, out: Path, comp: str) -> bool:
    """Write OUT unless the tree is unchanged since the last time; True if written."""
    key = squash_key(root, comp)
    stamp = out.with_name(out.name + ".key")
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return False
    stamp.unlink(missing_ok=True)
    out.unlink(missing_ok=True)
    # Every time stamp is SOURCE_DATE_EPOCH. Not through the environment: there
    # mksquashfs only clamps times that are newer, and older ones would leak in.
    epoch = str(source_date_epoch())
    run(["env", "-u", "SOURCE_DATE_EPOCH", "mksquashfs", root, out, "-noappend", "-all-root",
         "-no-xattrs", "-quiet", "-no-progress", "-processors", "2",
         "-all-time", epoch, "-mkfs-time", epoch, *COMPRESSORS[comp]], capture=True)
    stamp.write_text(key)
    return True


def du(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_size if not os.path.isdir(os.path.join(dirpath, name)) else 0
    return total


def report(root: Path, out: Path, pkgs: list[dict[str, object]]) -> None:
    print(f"  {'package':<20} {'version':<28} installed")
    for p in sorted(pkgs, key=lambda p: -int(str(p.get("installed_size", 0)))):
        print(f"  {p['name']!s:<20} {p['version']!s:<28} {int(str(p.get('installed_size', 0))) / 1024:8.0f} KiB")
    size = out.stat().st_size
    shown = out.relative_to(PROJECT) if out.is_relative_to(PROJECT) else out
    print(f"  {len(pkgs)} packages; rootfs {du(root) / 1048576:.1f} MiB of files; "
          f"{shown} {size / 1048576:.2f} MiB "
          f"(budget {SQUASHFS_BUDGET / 1048576:.0f} MiB)")
    if size > SQUASHFS_BUDGET:
        log(f"warning: {out.name} is over its {SQUASHFS_BUDGET / 1048576:.0f} MiB budget")


def build(args: argparse.Namespace) -> None:
    """The stage's steps, in order (see the module docstring)."""
    with step(f"Installing {' '.join(args.packages)} into {args.root} with mix"):
        install(args.root, args.packages)
    drop_build_repo_cache(args.root)
    compact_database(args.root)
    with step("Smoke test: the image's mix runs in a chroot"):
        smoke_test(args.root)
    with step(f"Writing {args.output} ({args.comp})"):
        if not squash(args.root, args.output, args.comp):
            log("unchanged since the last build: kept")
    with step(f"Writing the boot medium's repository {MEDIUM_REPO.relative_to(PROJECT)}"):
        size = medium_repo(args.root, MEDIUM_REPO)
        log(f"{size / 1048576:.2f} MiB")
    report(args.root, args.output, installed(args.root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixbuild rootfs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comp", choices=sorted(COMPRESSORS), default="zstd",
                        help="squashfs compressor (default zstd: ~15x faster to read; "
                             "xz: ~10%% smaller)")
    parser.add_argument("--root", type=Path, default=ROOTFS)
    parser.add_argument("--output", type=Path, default=SQUASHFS)
    parser.add_argument("packages", nargs="*", default=LIVE_PACKAGES)
    args = parser.parse_args(argv)
    try:
        with cache_lock("packages"):  # not while a packages build rewrites the repository
            build(args)
    except BuildError as e:
        print(f"mixbuild rootfs: error: {e}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
