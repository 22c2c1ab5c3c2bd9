"""A second release of the build's repository, for upgrade tests: chosen packages
rebuilt with a new version (the linux package's /usr/lib/linux/<version>/ moved
with it), optionally with a broken initramfs or with new contents (a note
appended to every ELF file, mix's __version__), and the index signed again with
the build's key. Made with mix itself: the package is unpacked into a staging
directory and rebuilt with `mix build`, the index written with `mix repo index`."""

from __future__ import annotations

import contextlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
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


def mark_binaries(files: Path, note: bytes) -> int:
    """Append NOTE to every ELF file under FILES: new contents that still run (the
    loader maps what the program headers name, and nothing reads past the end)."""
    marked = 0
    for path in sorted(files.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("r+b") as f:
                if f.read(4) == b"\x7fELF":
                    f.seek(0, os.SEEK_END)
                    f.write(note)
                    marked += 1
    return marked


def set_mix_version(files: Path, version: str) -> bool:
    """Give the mix modules under FILES (if any) __version__ VERSION, their byte code
    compiled again as the recipe compiles it (unchecked-hash: the source is not read)."""
    found = list(files.glob("usr/lib/python3*/dist-packages/mix/__init__.py"))
    for init in found:
        init.write_text(f'"""mix: the MixOS package manager."""\n\n__version__ = "{version}"\n')
        for pyc in init.parent.glob("__pycache__/__init__.*.pyc"):
            py_compile.compile(str(init), str(pyc), dfile="/" + str(init.relative_to(files)),
                               doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return bool(found)


def rebuild(package: Path, out_dir: Path, version: str, *, work: Path,
            broken_initramfs: bool = False, changed: bool = False) -> Path:
    """PACKAGE as VERSION; CHANGED: with new contents too (mark_binaries, and the mix
    package's modules say VERSION), so an upgrade to it really replaces its files."""
    staging = work / f"{package.name}.d"
    meta, compression = unpack(package, staging)
    old = str(meta["version"])
    if changed:
        marked = mark_binaries(staging / "files", f"\nmixos test release {version}\n".encode())
        if not (set_mix_version(staging / "files", version) or marked):
            raise ValueError(f"{package.name}: nothing to change (no ELF file, no mix module)")
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
                 broken_initramfs: bool = False, changed: bool = False) -> Path:
    """A copy of REPO at OUT where each package named in BUMPS has the new version
    given (the old one stays, as in a real repository), signed with the build's key;
    CHANGED: with new contents as well (see rebuild)."""
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
                    broken_initramfs=broken_initramfs and entry["name"] == "linux",
                    changed=changed)
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


@contextlib.contextmanager
def serve(repo: Path) -> Iterator[str]:
    """REPO served over HTTP on 127.0.0.1; yields the URL the guest reaches it by
    (QEMU user networking: the host is 10.0.2.2)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(repo)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://10.0.2.2:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
