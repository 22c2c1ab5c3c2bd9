"""mix build, keys and repository index signing."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from mixhelpers import make_key, make_pkg, sign_repo, stage

from mix.build import build_package
from mix.errors import PackageError, TrustError
from mix.index import verify_index
from mix.keys import load_keyring
from mix.package import PackageReader, read_metadata

SRC = Path(__file__).resolve().parents[2] / "src"


def test_build_is_reproducible_across_mtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    d = stage(tmp_path, "hello", files={"/usr/bin/hello": "hi\n", "/etc/hello.conf": "x=1\n",
                                         "/usr/bin/hi": "->hello"})
    a, b = tmp_path / "a.mixpkg", tmp_path / "b.mixpkg"
    build_package(d, a)
    os.utime(d / "files/usr/bin/hello", (1600000000, 1600000000))
    os.utime(d / "files/etc/hello.conf", (1800000000, 1800000000))
    build_package(d, b)
    os.utime(d / "files/usr/bin/hello", (1800000000, 1800000000))
    c = tmp_path / "c.mixpkg"
    build_package(d, c)
    assert a.read_bytes() != b.read_bytes()  # an older mtime is kept, not clamped
    assert a.read_bytes() == c.read_bytes()
    with gzip.open(a) as g:
        assert g.read(1)
    assert a.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(a) as t:
        names = t.getnames()
        assert names[0] == "metadata.json"
        assert names == ["metadata.json"] + sorted(names[1:])
        for m in t.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mtime <= 1700000000


def test_build_fills_files_hashes_and_config(tmp_path: Path) -> None:
    d = stage(tmp_path, "hello", files={"/usr/bin/hello": "hi\n", "/etc/hello.conf": "x=1\n"})
    md = build_package(d, tmp_path / "h.mixpkg")
    files = {f["path"]: f for f in md["files"]}
    assert files["/etc/hello.conf"]["config"] is True
    assert "config" not in files["/usr/bin/hello"]
    assert files["/usr/bin/hello"]["mode"] == 0o755
    assert files["/usr/bin"]["type"] == "dir"
    assert md["installed_size"] == 7
    assert read_metadata(tmp_path / "h.mixpkg").raw == md


def test_build_refuses_unlisted_setuid(tmp_path: Path) -> None:
    d = stage(tmp_path, "su", files={"/usr/bin/su": "x"})
    (d / "files/usr/bin/su").chmod(0o4755)
    with pytest.raises(PackageError, match="setuid"):
        build_package(d, tmp_path / "su.mixpkg")
    md = json.loads((d / "metadata.json").read_text())
    md["setuid"] = ["/usr/bin/su"]
    (d / "metadata.json").write_text(json.dumps(md))
    out = build_package(d, tmp_path / "su.mixpkg")
    assert out["files"][-1]["mode"] == 0o4755


def test_build_refuses_device_nodes(tmp_path: Path) -> None:
    d = stage(tmp_path, "dev", files={"/x": "x"})
    os.mkfifo(d / "files/fifo")
    with pytest.raises(PackageError, match="device node, fifo or socket"):
        build_package(d, tmp_path / "d.mixpkg")


@pytest.mark.parametrize("meta,match", [
    ({"version": "1.0 beta"}, "does not parse"),
    ({"version": "1-2-3"}, "does not parse"),
    ({"name": "Bad Name"}, "name"),
    ({"arch": "sparc"}, "arch"),
    ({"dependencies": ["libc >= "]}, "invalid dependency"),
    ({"dependencies": "libc"}, "list of strings"),
    ({"colour": "red"}, "unknown fields"),
])
def test_build_refuses_bad_metadata(tmp_path: Path, meta: dict, match: str) -> None:
    d = stage(tmp_path, "p", files={"/a": "a"})
    md = json.loads((d / "metadata.json").read_text())
    md.update(meta)
    (d / "metadata.json").write_text(json.dumps(md))
    with pytest.raises(PackageError, match=match):
        build_package(d, tmp_path / "p.mixpkg")


def test_build_refuses_metadata_missing_fields_or_not_json(tmp_path: Path) -> None:
    d = stage(tmp_path, "p", files={"/a": "a"})
    (d / "metadata.json").write_text('{"name": "p"}')
    with pytest.raises(PackageError, match="missing required fields: version"):
        build_package(d, tmp_path / "p.mixpkg")
    (d / "metadata.json").write_text('{"name": ')
    with pytest.raises(PackageError, match="not valid JSON"):
        build_package(d, tmp_path / "p.mixpkg")


def test_reader_streams_members_matching_metadata(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path, tmp_path, "hello", files={"/usr/bin/hello": "hi\n"},
                   scripts={"post-install": "#!/bin/sh\ntrue\n"})
    with PackageReader(pkg) as r:
        got = {e.path: (s.read() if s else None) for e, s, _ in r.members()}
        assert r.scripts == {"post-install": b"#!/bin/sh\ntrue\n"}
    assert got == {"/usr": None, "/usr/bin": None, "/usr/bin/hello": b"hi\n"}


def test_signed_index_verifies_and_refuses_tampering(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_pkg(tmp_path, repo, "hello", files={"/a": "a"})
    key, pub = make_key(tmp_path)
    sign_repo(repo, key)
    ring = load_keyring(pub.parent)
    data, sig = (repo / "index.json").read_bytes(), (repo / "index.json.sig").read_bytes()
    doc = verify_index(data, sig, ring, "test")
    assert [p["name"] for p in doc["packages"]] == ["hello"]
    with pytest.raises(TrustError, match="bad signature"):
        verify_index(data.replace(b"hello", b"hellp"), sig, ring, "test")
    with pytest.raises(TrustError, match="malformed"):
        verify_index(data, b"", ring, "test")
    _other_key, other_pub = make_key(tmp_path, "other")
    with pytest.raises(TrustError, match="unknown key"):
        verify_index(data, sig, load_keyring(other_pub.parent), "test")
    with pytest.raises(TrustError, match="expired"):
        verify_index(data, sig, ring, "test", now=time.time() + 31 * 86400)
    with pytest.raises(TrustError, match="rollback"):
        verify_index(data, sig, ring, "test", held_created=doc["created"] + 1)


def test_cli_build_key_index(tmp_path: Path) -> None:
    d = stage(tmp_path, "hello", files={"/usr/bin/hello": "hi\n"})
    env = dict(os.environ, PYTHONPATH=str(SRC))
    repo = tmp_path / "repo"

    def mix(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mix", *args], env=env, text=True, check=False,
                              capture_output=True, timeout=60)

    assert mix("build", str(d), "-o", str(repo / "hello-1.0.noarch.mixpkg")).returncode == 0
    assert mix("key", "generate", str(tmp_path / "k")).returncode == 0
    r = mix("key", "generate", str(tmp_path / "k"))
    assert r.returncode != 0 and "already exists" in r.stderr
    r = mix("repo", "index", str(repo), "--key", str(tmp_path / "k.key"))
    assert r.returncode == 0, r.stderr
    assert json.loads((repo / "index.json").read_text())["packages"][0]["name"] == "hello"
    (d / "metadata.json").write_text("nope")
    r = mix("build", str(d), "-o", str(tmp_path / "x.mixpkg"))
    assert r.returncode == 8 and "not valid JSON" in r.stderr


def test_zstd_build_is_reproducible_and_fixed(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    d = stage(tmp_path, "hello", files={"/usr/bin/hello": os.urandom(3_000_000),
                                         "/etc/hello.conf": "x=1\n", "/usr/bin/hi": "->hello"})
    a, b = tmp_path / "a.mixpkg", tmp_path / "b.mixpkg"
    build_package(d, a, "zstd")
    os.utime(d / "files/etc/hello.conf", (1800000000, 1800000000))  # clamped: no change
    build_package(d, b, "zstd")
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = data[4]
    # no content size, no dictionary id, not single-segment, with a checksum
    assert descriptor & 0xC0 == 0 and descriptor & 0x03 == 0 and not descriptor & 0x20
    assert descriptor & 0x04
    build_package(d, tmp_path / "g.mixpkg", "gzip")  # the same package, only compressed otherwise
    assert read_metadata(a).source == read_metadata(tmp_path / "g.mixpkg").source
    with PackageReader(a) as r:
        got = {e.path: (s.read() if s else None) for e, s, _ in r.members()}
    assert got["/usr/bin/hello"] == (d / "files/usr/bin/hello").read_bytes()


def test_mix_without_zstandard_names_the_package_and_what_to_install(tmp_path: Path) -> None:
    """A Python in which `import zstandard` fails (sys.modules entry None) runs the real mix."""
    d = stage(tmp_path, "hello", files={"/usr/bin/hello": "hi\n"})
    zst, gz = tmp_path / "hello-zst.mixpkg", tmp_path / "hello-gz.mixpkg"
    build_package(d, zst, "zstd")
    build_package(d, gz, "gzip")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    no_zstd = "import sys; sys.modules['zstandard'] = None; from mix.cli import main; " \
              "sys.exit(main(sys.argv[1:]))"

    def mix(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", no_zstd, *args], env=env, text=True,
                              check=False, capture_output=True, timeout=60)

    root = tmp_path / "root"
    root.mkdir()
    r = mix("--root", str(root), "-y", "install", "--allow-untrusted", str(zst))
    assert r.returncode == 8, r.stderr
    assert str(zst) in r.stderr and "zstandard" in r.stderr and "python3-zstandard" in r.stderr
    assert list(root.rglob("*")) == [] or not (root / "usr").exists()
    r = mix("--root", str(root), "-y", "install", "--allow-untrusted", str(gz))
    assert r.returncode == 0, r.stderr
    assert (root / "usr/bin/hello").read_text() == "hi\n"
    r = mix("build", str(d), "-o", str(tmp_path / "x.mixpkg"), "--compression", "zstd")
    assert r.returncode == 2 and "zstandard" in r.stderr and not (tmp_path / "x.mixpkg").exists()


def _members(blob: bytes, fast: bool) -> list[tuple[object, ...]]:
    from mix.decompress import DecompressReader
    from mix.package import _TarStream

    fields = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "uname",
              "gname", "devmajor", "devminor", "offset", "offset_data")
    t = _TarStream(DecompressReader(io.BytesIO(gzip.compress(blob, mtime=0)), "gzip"), "t",
                   fast=fast)
    out = []
    while (info := t.next()) is not None:
        out.append(tuple(getattr(info, f) for f in fields)
                   + (t.read_data() if info.isreg() else b"",))
    return out


def test_plain_header_parser_agrees_with_tarfile(tmp_path: Path) -> None:
    """mix parses the plain headers mix build writes itself, and leaves every other to
    tarfile: both must give the same members, whatever the archive holds."""
    long_dir = "/usr/share/" + "d" * 120
    d = stage(tmp_path, "edge", files={
        "/usr/bin/tool": "t", "/usr/bin/empty": "", "/etc/é-conf": "x=1\n",
        f"{long_dir}/file-with-a-long-name": "long", "/usr/bin/link": "->tool",
        "/usr/bin/far-link": "->" + "../" * 40 + "target", "/usr/bin/su": "s"},
        setuid=["/usr/bin/su"])
    (d / "files/usr/bin/su").chmod(0o4755)
    build_package(d, tmp_path / "edge.mixpkg")
    blob = gzip.decompress((tmp_path / "edge.mixpkg").read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("usr/" + "p" * 120 + "/name")  # a ustar name prefix
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
        info = tarfile.TarInfo("old-style-dir/")
        info.type = tarfile.AREGTYPE
        t.addfile(info)
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global"}) as t:
        info = tarfile.TarInfo("files/pax-" + "é" * 60)
        info.size, info.mtime = 2, 1.5
        t.addfile(info, io.BytesIO(b"px"))
        t.addfile(tarfile.TarInfo("files/plain-after-a-global-header"))
    for archive in (blob, buf.getvalue(), pax.getvalue()):
        fast, slow = _members(archive, True), _members(archive, False)
        assert fast == slow and len(fast) > 1
    names = [m[0] for m in _members(blob, True)]
    assert f"files{long_dir}/file-with-a-long-name" in names
    # a header with a wrong checksum is refused either way
    bad = bytearray(blob)
    bad[148:156] = b"0000001\0"  # metadata.json's header
    for fast_path in (True, False):
        with pytest.raises(PackageError, match="corrupt package archive"):
            _members(bytes(bad), fast_path)
