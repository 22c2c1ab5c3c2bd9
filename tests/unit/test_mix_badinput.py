"""Bad input: each refused with a clear error, nothing written outside the root, state
unchanged. Packages here are hand-made tars (not `mix build`) so they can lie."""

from __future__ import annotations

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
from mixhelpers import World, make_pkg

from mix.errors import PackageError
from mix.package import FileEntry, files_checksum


def craft(out: Path, files: list[dict[str, Any]], members: list[tuple[tarfile.TarInfo, bytes]],
          metadata: dict[str, Any] | None = None, raw_meta: bytes | None = None) -> Path:
    """A package with the given metadata file list and tar members (in that order)."""
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
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return out


def reg(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def fentry(path: str, data: bytes, mode: int = 0o644) -> dict[str, Any]:
    return {"path": path, "type": "file", "mode": mode, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    make_pkg(tmp_path, w.repo, "good", files={"/usr/bin/good": "g"})
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
    pkg = craft(w.base / "p.mixpkg", [fentry("/x", X)], [reg("files/../../outside/x", X)])
    refused(w, pkg, capsys, 8, "is not listed in metadata.json")


def test_metadata_path_with_dotdot_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("/../outside/x", X)], [reg("files/../outside/x", X)])
    refused(w, pkg, capsys, 8, "'..' component")


def test_absolute_member_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("/x", X)], [reg(str(w.base / "outside/x"), X)])
    refused(w, pkg, capsys, 8, "outside files/ and scripts/")


def test_relative_metadata_path_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("x", X)], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "must be absolute")


def test_device_node_is_refused(w: World, capsys: Any) -> None:
    dev = tarfile.TarInfo("files/dev/sda")
    dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.BLKTYPE, 8, 0, 0o660
    pkg = craft(w.base / "p.mixpkg", [fentry("/dev/sda", b"")], [(dev, b"")])
    refused(w, pkg, capsys, 8, "is a special in the archive")
    pkg = craft(w.base / "q.mixpkg", [{"path": "/dev/sda", "type": "device", "mode": 0o660}],
                [(dev, b"")])
    refused(w, pkg, capsys, 8, "device nodes")


def test_setuid_not_listed_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("/su", X, 0o755)], [reg("files/su", X, 0o4755)])
    refused(w, pkg, capsys, 8, "mode 4755 in the archive but 755")
    pkg = craft(w.base / "q.mixpkg", [fentry("/su", X, 0o4755)], [reg("files/su", X, 0o4755)])
    refused(w, pkg, capsys, 8, "setuid/setgid but not listed")


def test_duplicate_entries_are_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("/x", X), fentry("/x", X)], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "duplicate entry /x")
    pkg = craft(w.base / "q.mixpkg", [fentry("/x", X)], [reg("files/x", X), reg("files/x", X)])
    refused(w, pkg, capsys, 8, "duplicate member")


def test_content_not_matching_metadata_hash_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [fentry("/x", b"other!!")], [reg("files/x", X)])
    refused(w, pkg, capsys, 8, "does not match its sha256")


def test_file_below_own_symlink_is_refused(w: World, capsys: Any) -> None:
    link = tarfile.TarInfo("files/l")
    link.type, link.linkname = tarfile.SYMTYPE, str(w.base / "outside")
    files = [{"path": "/l", "type": "symlink", "mode": 0o777, "target": link.linkname},
             fentry("/l/x", X)]
    pkg = craft(w.base / "p.mixpkg", files, [(link, b""), reg("files/l/x", X)])
    refused(w, pkg, capsys, 8, "lies below /l, which is a symlink")


def test_truncated_and_non_gzip_files_are_refused(w: World, capsys: Any) -> None:
    good = make_pkg(w.base, w.base / "local", "big", files={"/big": os.urandom(200_000)})
    data = good.read_bytes()
    trunc = w.base / "trunc.mixpkg"
    trunc.write_bytes(data[: len(data) // 2])
    refused(w, trunc, capsys, 8, "corrupt package archive")
    plain = w.base / "plain.mixpkg"
    plain.write_bytes(b"just text, not a package\n" * 10)
    refused(w, plain, capsys, 8, "not a gzip file")


def test_bad_metadata_is_refused(w: World, capsys: Any) -> None:
    pkg = craft(w.base / "p.mixpkg", [], [], raw_meta=b"{not json")
    refused(w, pkg, capsys, 8, "not valid JSON")
    pkg = craft(w.base / "q.mixpkg", [], [], raw_meta=b'{"name": "bad"}')
    refused(w, pkg, capsys, 8, "missing required fields")
    pkg = craft(w.base / "r.mixpkg", [], [], metadata={"version": "1..0-r1-2"})
    refused(w, pkg, capsys, 8, "does not parse")
    pkg = craft(w.base / "s.mixpkg", [fentry("/x", X)], [reg("files/x", X)],
                metadata={"checksum": "0" * 64})
    refused(w, pkg, capsys, 8, "checksum")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_during_extraction_rolls_back(tmp_path: Path, capsys: Any) -> None:
    w = World(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr!r}")
    try:
        w.root = small
        make_pkg(tmp_path, w.repo, "small", files={"/usr/bin/small": "s"})
        make_pkg(tmp_path, w.repo, "huge", files={"/usr/share/huge/a": os.urandom(300_000),
                                                  "/usr/share/huge/b": os.urandom(400_000)})
        w.sign()
        assert w.mix("install", "small")[0] == 0
        before = w.tree()
        rc, _, err = w.mix("install", "huge", capsys=capsys)
        assert rc == 7 and "No space left on device" in err and "rolled back" in err
        assert w.tree() == before and w.installed() == {"small": "1.0"}
        assert not [p for p in small.rglob("*") if ".mixtmp-" in p.name]
    finally:
        subprocess.run(["umount", str(small)], check=False)
