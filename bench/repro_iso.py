"""Reproducibility check: build the ISO twice, in two checkouts, and compare.

Clones the committed HEAD of this project into two scratch directories of different
path lengths, gives each its own empty MIXOS_CACHE holding the same repository signing
key (copied from $MIXOS_CACHE/keys, or made once for both), runs `make iso` in each
with the same SOURCE_DATE_EPOCH, then prints the sha256 of every artifact both builds
made and whether they agree. Exit status 1 when the ISOs differ.

Long (two full builds, every download included): run it by hand, not in the unit
tests. --reuse-kernel seeds both caches with this machine's kernel cache entry for the
current inputs and its downloaded .debs (the kernel's own reproducibility is checked
by building it twice without the option: about 8 minutes per kernel on 2 cores).

    python3 bench/repro_iso.py [--keep] [--workdir DIR] [--reuse-kernel]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
KEY = "mixos-repo"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def artifacts(checkout: Path) -> dict[str, str]:
    out = {}
    for p in sorted((checkout / "artifacts").rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(checkout / "artifacts"))] = sha256(p)
    return out


def build(checkout: Path, cache: Path, epoch: str) -> None:
    env = dict(os.environ, MIXOS_CACHE=str(cache), SOURCE_DATE_EPOCH=epoch)
    subprocess.run(["make", "iso"], cwd=checkout, env=env, check=True)


def seed_cache(cache: Path) -> None:
    """Copy this machine's kernel entry for the current inputs and its .deb downloads."""
    sys.path.insert(0, str(PROJECT / "src"))
    from mixbuild.images.kernel import cached_entry

    own = Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos"))
    entry = cached_entry()
    if not entry.is_dir():
        raise SystemExit(f"{entry} does not exist: run 'make kernel' first")
    shutil.copytree(entry, cache / "kernel" / entry.name)
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    for deb in (own / "debs").glob("*.deb"):  # the downloads, not what was unpacked
        shutil.copyfile(deb, cache / "debs" / deb.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the two checkouts")
    ap.add_argument("--workdir", type=Path, help="where the checkouts go (default: a temp dir)")
    ap.add_argument("--reuse-kernel", action="store_true",
                    help="copy the kernel cache entry and downloaded .debs into both caches")
    args = ap.parse_args()
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "1767225600")
    work = Path(tempfile.mkdtemp(prefix="mixos-repro-", dir=args.workdir))
    keys = work / "keys"
    own = Path(os.environ.get("MIXOS_CACHE", "/var/cache/mixos")) / "keys"
    if (own / f"{KEY}.key").exists():
        shutil.copytree(own, keys)
    else:
        keys.mkdir()
        subprocess.run([sys.executable, "-m", "mix", "key", "generate", str(keys / KEY)],
                       env=dict(os.environ, PYTHONPATH=str(PROJECT / "src")), check=True,
                       stdout=subprocess.DEVNULL)
    checkouts = [work / "a", work / "second-checkout-with-a-longer-path"]
    try:
        for i, checkout in enumerate(checkouts):
            subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT),
                            str(checkout)], check=True)
            cache = work / f"cache{i}"
            shutil.copytree(keys, cache / "keys")
            if args.reuse_kernel:
                seed_cache(cache)
            build(checkout, cache, epoch)
        first, second = (artifacts(c) for c in checkouts)
        differ = 0
        for name in sorted(set(first) | set(second)):
            a, b = first.get(name, "-"), second.get(name, "-")
            same = a == b
            differ += not same
            print(f"{'same  ' if same else 'DIFFER'} {a[:16]} {b[:16]}  {name}")
        isos = [n for n in first if n.endswith(".iso")]
        bad = [n for n in isos if first[n] != second.get(n)]
        print(f"{len(first)} artifacts, {differ} differ; ISO: "
              + ("identical" if isos and not bad else "DIFFERENT" if bad else "missing"))
        return 0 if isos and not bad else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
