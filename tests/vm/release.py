"""A second release of the build's repository, for upgrade tests: chosen packages
rebuilt with a new version (the linux package's /usr/lib/linux/<version>/ moved
with it), optionally with a broken initramfs, and the index signed again with
the build's key. Made with mix itself: the package is unpacked into a staging
directory and rebuilt with `mix build`, the index written with `mix repo index`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from mix.decompress import DecompressReader, compression_of
from mixbuild.common import PROJECT, cache_dir

SIGNING_KEY = "mixos-repo.key"


def mix(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(PROJECT / "src"))
    return subprocess.run([sys.executable, "-m", "mix", *map(str, args)], env=env, check=True,
                          capture_output=True, text=True, timeout=300)


def unpack(package: Path, staging: Path) -> tuple[dict[str, object], str]:
    """Unpack PACKAGE into STAGING (metadata.json, scripts/, files/); return its
    metadata and compression."""
    with package.open("rb") as raw:
        compression = compression_of(raw.read(8))
        raw.seek(0)
        assert compression is not None, f"{package}: not a gzip or zstd package"
        with tarfile.open(fileobj=DecompressReader(raw, compression), mode="r|") as tar:
            tar.extractall(staging, filter="tar")
    meta = json.loads((staging / "metadata.json").read_text())
    return meta, compression


def rebuild(package: Path, out_dir: Path, version: str, *, work: Path,
            broken_initramfs: bool = False) -> Path:
    staging = work / f"{package.name}.d"
    meta, compression = unpack(package, staging)
    old = str(meta["version"])
    for key in ("files", "checksum", "installed_size", "build_date", "scripts"):
        meta.pop(key, None)
    meta["version"] = version
    kernels = staging / "files/usr/lib/linux"
    if (kernels / old).is_dir():
        (kernels / old).rename(kernels / version)
        if broken_initramfs:
            # Not an initramfs: the kernel cannot unpack it, finds no root and panics.
            (kernels / version / "initramfs.img").write_bytes(os.urandom(65536))
    (staging / "metadata.json").write_text(json.dumps(meta, indent=1))
    arch = meta.get("arch", "noarch")
    out = out_dir / f"{meta['name']}-{version}.{arch}.mixpkg"
    mix("build", staging, "-o", out, "--compression", compression)
    shutil.rmtree(staging)
    return out


def make_release(repo: Path, out: Path, bumps: dict[str, str], *,
                 broken_initramfs: bool = False) -> Path:
    """A copy of REPO at OUT where each package named in BUMPS has the new version
    given (the old one stays, as in a real repository), signed with the build's key."""
    out.mkdir(parents=True)
    index = json.loads((repo / "index.json").read_text())
    work = out.parent / f"{out.name}.work"
    work.mkdir()
    for entry in index["packages"]:
        src = repo / entry["filename"]
        os.link(src, out / src.name) if src.stat().st_dev == out.stat().st_dev \
            else shutil.copyfile(src, out / src.name)
        if entry["name"] in bumps:
            rebuild(src, out, bumps[entry["name"]], work=work,
                    broken_initramfs=broken_initramfs and entry["name"] == "linux")
    shutil.rmtree(work)
    mix("repo", "index", out, "--key", cache_dir() / "keys" / SIGNING_KEY)
    return out


def repo_disk(repo: Path, image: Path) -> Path:
    """An ext4 image holding REPO at /repo, to attach to a guest read-only."""
    size = sum(p.stat().st_size for p in repo.iterdir()) // (1024 * 1024) + 32
    with image.open("wb") as f:
        f.truncate(size * 1024 * 1024)
    tree = image.with_suffix(".tree")
    (tree / "repo").mkdir(parents=True)
    for p in repo.iterdir():
        shutil.copyfile(p, tree / "repo" / p.name)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "MIXREPO", "-d", str(tree),
                    str(image)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return image
