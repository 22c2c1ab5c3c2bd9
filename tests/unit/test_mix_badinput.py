"""Bad input: each refused with a clear error, nothing written outside the root, state
unchanged. Packages here are hand-made tars (not `mix build`) so they can lie. Every test
runs twice: with gzip packages and with zstd ones (package format 2)."""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from mixhelpers import World, make_pkg

from mix.errors import PackageError
from mix.package import FileEntry, files_checksum


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def craft(w: World, name: str, files: list[dict[str, Any]],
          members: list[tuple[tarfile.TarInfo, bytes]], metadata: dict[str, Any] | None = None,
          raw_meta: bytes | None = None) -> Path:
    """A package w.base/NAME with the given metadata file list and tar members (in that
    order), compressed as w.compression."""
    try:
        checksum = files_checksum([FileEntry.parse(f, "t") for f in files])
    except PackageError:
        checksum = "0" * 64  # the file list itself is what the test makes invalid
    md = {"format": 1, "name": "bad", "version": "1.0", "description": "d", "arch": "noarch",
          "files": files, "installed_size": 0, "build_date": 0, "checksum": checksum}
    md.update(metadata or {})
    meta = raw_meta if raw_meta is not None else json.dumps(md).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("metadata.json")
        info.size = len(meta)
        t.addfile(info, io.BytesIO(meta))
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    out = w.base / name
    out.write_bytes(compress(buf.getvalue(), w.compression))
    return out


def reg(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def fentry(path: str, data: bytes, mode: int = 0o644) -> dict[str, Any]:
    return {"path": path, "type": "file", "mode": mode, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture(params=["gzip", "zstd"])
def w(tmp_path: Path, request: pytest.FixtureRequest) -> World:
    w = World(tmp_path, request.param)
    make_pkg(tmp_path, w.repo, "good", compression=w.compression, files={"/usr/bin/good": "g"})
    w.sign()
    assert w.mix("install", "good")[0] == 0
    (tmp_path / "outside").mkdir()
    return w


def refused(w: World, pkg: Path, capsys: Any, code: int, match: str) -> None:
    before, db_before = w.tree(), w.installed()
    rc, _, err = w.mix("install", "--allow-untrusted", str(pkg), capsys=capsys)
    assert rc == code, err
    assert match in err, err
    assert w.tree() == before and w.installed() == db_before
    assert list((w.base / "outside").iterdir()) == []
    assert not [p for p in w.root.rglob("*") if ".mixtmp-" in p.name]


X = b"payload"


def test_member_with_dotdot_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/x", X)], [reg("files/../../outside/x", X)])
    refused(w, pkg, capsys, 8, "is not listed in metadata.json")


def test_metadata_path_with_dotdot_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/../outside/x", X)], [reg("files/../outside/x", X)])
    refused(w, pkg, capsys, 8, "'..' component")


def test_absolute_member_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/x", X)], [reg(str(w.base / "outside/x"), X)])
    refused(w, pkg, capsys, 8, "outside files/ and scripts/")


def test_relative_metadata_path_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("x", X)], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "must be absolute")


def test_device_node_is_refused(w: World, capsys: Any) -> None:
    dev = tarfile.TarInfo("files/dev/sda")
    dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.BLKTYPE, 8, 0, 0o660
    pkg = craft(w, "p.mixpkg", [fentry("/dev/sda", b"")], [(dev, b"")])
    refused(w, pkg, capsys, 8, "is a special in the archive")
    pkg = craft(w, "q.mixpkg", [{"path": "/dev/sda", "type": "device", "mode": 0o660}],
                [(dev, b"")])
    refused(w, pkg, capsys, 8, "device nodes")


def test_setuid_not_listed_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/su", X, 0o755)], [reg("files/su", X, 0o4755)])
    refused(w, pkg, capsys, 8, "mode 4755 in the archive but 755")
    pkg = craft(w, "q.mixpkg", [fentry("/su", X, 0o4755)], [reg("files/su", X, 0o4755)])
    refused(w, pkg, capsys, 8, "setuid/setgid but not listed")


def test_duplicate_entries_are_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/x", X), fentry("/x", X)], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "duplicate entry /x")
    pkg = craft(w, "q.mixpkg", [fentry("/x", X)], [reg("files/x", X), reg("files/x", X)])
    refused(w, pkg, capsys, 8, "duplicate member")


def test_content_not_matching_metadata_hash_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [fentry("/x", b"other!!")], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "does not match its sha256")


def test_file_below_own_symlink_is_refused(w: World, capsys: Any) -> None:
    link = tarfile.TarInfo("files/l")
    link.type, link.linkname = tarfile.SYMTYPE, str(w.base / "outside")
    files = [{"path": "/l", "type": "symlink", "mode": 0o777, "target": link.linkname},
             fentry("/l/x", X)]
    pkg = craft(w, "p.mixpkg", files, [(link, b""), reg("files/l/x", X)])
    refused(w, pkg, capsys, 8, "lies below /l, which is a symlink")


def test_truncated_and_non_package_files_are_refused(w: World, capsys: Any) -> None:
    good = make_pkg(w.base, w.base / "local", "big", compression=w.compression,
                    files={"/big": os.urandom(200_000)})
    data = good.read_bytes()
    trunc = w.base / "trunc.mixpkg"
    # cut in the middle, and cut off only the end (gzip trailer, zstd last block/checksum)
    for keep in (len(data) // 2, len(data) - 1, len(data) - 4, len(data) - 9):
        trunc.write_bytes(data[:keep])
        refused(w, trunc, capsys, 8, "corrupt package archive")
    trailing = w.base / "trailing.mixpkg"
    trailing.write_bytes(data + b"not compressed data")
    refused(w, trailing, capsys, 8, "corrupt package archive")
    plain = w.base / "plain.mixpkg"
    plain.write_bytes(b"just text, not a package\n" * 10)
    refused(w, plain, capsys, 8, "not a gzip or zstd file")
    empty = w.base / "empty.mixpkg"
    empty.write_bytes(b"")
    refused(w, empty, capsys, 8, "not a gzip or zstd file")
    flipped = w.base / "flipped.mixpkg"
    flipped.write_bytes(data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0xFF])
                        + data[len(data) // 3 + 1:])
    refused(w, flipped, capsys, 8, "corrupt package archive")


def test_bad_metadata_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w, "p.mixpkg", [], [], raw_meta=b"{not json")
    refused(w, pkg, capsys, 8, "not valid JSON")
    pkg = craft(w, "q.mixpkg", [], [], raw_meta=b'{"name": "bad"}')
    refused(w, pkg, capsys, 8, "missing required fields")
    pkg = craft(w, "r.mixpkg", [], [], metadata={"version": "1..0-r1-2"})
    refused(w, pkg, capsys, 8, "does not parse")
    pkg = craft(w, "s.mixpkg", [fentry("/x", X)], [reg("files/x", X)],
                metadata={"checksum": "0" * 64})
    refused(w, pkg, capsys, 8, "checksum")


def test_zstd_frame_asking_for_a_large_window_is_refused(tmp_path: Path, capsys: Any) -> None:
    """The window is memory the reader must give; mix caps it at 8 MiB (levels up to 19)."""
    w = World(tmp_path, "zstd")
    make_pkg(tmp_path, w.repo, "good", compression="zstd", files={"/usr/bin/good": "g"})
    w.sign()
    assert w.mix("install", "good")[0] == 0
    (tmp_path / "outside").mkdir()
    pkg = craft(w, "p.mixpkg", [fentry("/x", X)], [reg("files/x", X)])
    tar = zstandard.ZstdDecompressor().decompress(pkg.read_bytes(), max_output_size=1 << 20)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    pkg.write_bytes(cobj.compress(tar) + cobj.flush())
    refused(w, pkg, capsys, 8, "requires too much memory")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_plan_larger_than_the_disk_is_refused(tmp_path: Path, capsys: Any,
                                                compression: str) -> None:
    w = World(tmp_path, compression)
    small = tmp_path / "small"
    small.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr!r}")
    try:
        w.root = small
        w.pkg("small", files={"/usr/bin/small": "s"})
        w.pkg("huge", files={"/usr/share/huge/a": os.urandom(300_000),
                             "/usr/share/huge/b": os.urandom(400_000)})
        w.sign()
        assert w.mix("install", "small")[0] == 0
        before = w.tree()
        rc, _, err = w.mix("install", "huge", capsys=capsys)
        # refused by the space check before anything is written (test_mix_diskfull.py)
        assert rc == 7 and "disk full: the transaction needs" in err, err
        assert f"filesystem of {small}" in err and "free at least" in err
        assert w.tree() == before and w.installed() == {"small": "1.0"}
        assert not [p for p in small.rglob("*") if ".mixtmp-" in p.name]
    finally:
        gc.collect()  # file objects kept alive by a traceback would keep the mount busy
        if subprocess.run(["umount", str(small)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(small)], check=False)
