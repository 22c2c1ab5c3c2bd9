"""The docker-archive builder (mixbuild.containerimage) that gives podman's VM test a
local image: the archive's manifest, config and layer reference each other by the
digests a loader checks, the layer holds the package's files over the skeleton, and
the same input gives the same image id."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from mixhelpers import make_pkg

from mixbuild.common import BuildError
from mixbuild.containerimage import Entry, layer_tar, package_entries, write_docker_archive


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                if m.isfile()}


def test_archive_members_reference_each_other_by_digest(tmp_path: Path) -> None:
    image_id = write_docker_archive(tmp_path / "img.tar",
                                    [Entry("/usr/bin/hello", "file", 0o755, b"#!/bin/sh\n")],
                                    "localhost/hello:1", cmd=["/usr/bin/hello"])
    files = read_archive(tmp_path / "img.tar")
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["localhost/hello:1"]
    assert manifest[0]["Config"] == f"{image_id}.json"
    config_bytes = files[manifest[0]["Config"]]
    assert hashlib.sha256(config_bytes).hexdigest() == image_id
    config = json.loads(config_bytes)
    layer = files[manifest[0]["Layers"][0]]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Cmd"] == ["/usr/bin/hello"]
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert json.loads(files["repositories"]) == {
        "localhost/hello": {"1": manifest[0]["Layers"][0].split("/")[0]}}


def test_layer_has_the_files_over_a_merged_usr_skeleton(tmp_path: Path) -> None:
    write_docker_archive(tmp_path / "img.tar",
                         [Entry("/usr/bin/busybox", "file", 0o755, b"ELF"),
                          Entry("/usr/bin/sh", "symlink", target="/usr/bin/busybox")],
                         "localhost/busybox:mixos")
    files = read_archive(tmp_path / "img.tar")
    layer_name = json.loads(files["manifest.json"])[0]["Layers"][0]
    m = members(files[layer_name])
    assert m["bin"].issym() and m["bin"].linkname == "usr/bin"
    assert m["usr/bin/sh"].linkname == "/usr/bin/busybox"
    assert m["usr/bin/busybox"].size == 3 and m["usr/bin/busybox"].mode == 0o755
    assert m["tmp"].isdir() and m["tmp"].mode == 0o1777
    assert {(i.uid, i.gid) for i in m.values()} == {(0, 0)}
    assert list(m) == sorted(m)


def test_same_input_gives_the_same_image_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    entries = [Entry("/etc/motd", "file", 0o644, b"hi\n")]
    first = write_docker_archive(tmp_path / "a.tar", entries, "localhost/x:1")
    second = write_docker_archive(tmp_path / "b.tar", list(reversed(entries)), "localhost/x:1")
    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    changed = write_docker_archive(tmp_path / "c.tar", [Entry("/etc/motd", "file", 0o644,
                                                              b"ho\n")], "localhost/x:1")
    assert changed != first


def test_a_later_entry_replaces_an_earlier_one_of_the_same_path() -> None:
    m = members(layer_tar([Entry("/etc", "dir"), Entry("/etc", "dir", mode=0o700)]))
    assert m["etc"].mode == 0o700 and len(m) == 1


def test_package_entries_read_a_mixpkg(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    pkg = make_pkg(tmp_path, repo, "tiny", files={"/usr/bin/tiny": b"\x7fELF tiny",
                                                  "/usr/bin/tiny2": "->tiny"})
    got = {e.path: e for e in package_entries(pkg)}
    assert got["/usr/bin/tiny"].data == b"\x7fELF tiny"
    assert got["/usr/bin/tiny"].mode == 0o755
    assert got["/usr/bin/tiny2"].type == "symlink" and got["/usr/bin/tiny2"].target == "tiny"


@pytest.mark.parametrize("tag", ["busybox", "Localhost/busybox:1", "localhost/busy box:1", ""])
def test_bad_tag_is_refused_and_nothing_is_written(tmp_path: Path, tag: str) -> None:
    with pytest.raises(BuildError, match="tag"):
        write_docker_archive(tmp_path / "img.tar", [], tag)
    assert not (tmp_path / "img.tar").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"path": "usr/bin/x", "type": "file"}, "absolute"),
    ({"path": "/usr/../etc/x", "type": "file"}, "absolute"),
    ({"path": "/dev/null", "type": "char"}, "one of file, dir, symlink"),
    ({"path": "/bin/sh", "type": "symlink"}, "no target"),
])
def test_bad_entry_is_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(BuildError, match=message):
        Entry(**kwargs)  # type: ignore[arg-type]
