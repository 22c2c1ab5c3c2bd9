"""The installer's disk tools and Python libraries in the built repository
(artifacts/repo from `make packages`): each package is in the signed index and
carries the programs the installer runs, its libraries come from their own library
packages, and nothing else (no docs, no man pages) slips in. Skipped until the
repository exists."""

from __future__ import annotations

import json
import re

import pytest

from mix.package import FileEntry, read_metadata
from mixbuild.common import ARTIFACTS, PACKAGES_DIR

REPO = ARTIFACTS / "repo"
pytestmark = pytest.mark.skipif(not (REPO / "index.json").exists(),
                                reason="needs artifacts/repo ('make packages')")

SITE = "/usr/lib/python3/dist-packages"
# package -> paths it must carry (a symlink's target is checked in SYMLINKS).
FILES = {
    # mke2fs itself as mkfs.ext4: /usr/sbin/mke2fs is BusyBox's applet link.
    "e2fsprogs": ["/usr/sbin/mkfs.ext4", "/usr/sbin/e2fsck", "/usr/sbin/fsck.ext4",
                  "/usr/sbin/resize2fs", "/usr/sbin/tune2fs", "/etc/mke2fs.conf"],
    "fdisk": ["/usr/sbin/sfdisk"],
    "util-linux-partx": ["/usr/bin/partx"],
    "dosfstools": ["/usr/sbin/mkfs.fat", "/usr/sbin/mkfs.vfat", "/usr/sbin/fsck.fat",
                   "/usr/sbin/fsck.vfat"],
    "python3-yaml": [f"{SITE}/yaml/__init__.py", f"{SITE}/yaml/constructor.py",
                     f"{SITE}/yaml/__pycache__/__init__.cpython-311.pyc"],
    "python3-fastjsonschema": [f"{SITE}/fastjsonschema/__init__.py",
                               f"{SITE}/fastjsonschema/generator.py",
                               f"{SITE}/fastjsonschema/__pycache__/__init__.cpython-311.pyc"],
    "libext2fs": ["/usr/lib/x86_64-linux-gnu/libext2fs.so.2",
                  "/usr/lib/x86_64-linux-gnu/libe2p.so.2"],
    "libblkid": ["/usr/lib/x86_64-linux-gnu/libblkid.so.1"],
    "libuuid": ["/usr/lib/x86_64-linux-gnu/libuuid.so.1"],
    "libfdisk": ["/usr/lib/x86_64-linux-gnu/libfdisk.so.1"],
    "libsmartcols": ["/usr/lib/x86_64-linux-gnu/libsmartcols.so.1"],
    "libreadline": ["/usr/lib/x86_64-linux-gnu/libreadline.so.8"],
    "libyaml": ["/usr/lib/x86_64-linux-gnu/libyaml-0.so.2"],
}
SYMLINKS = {"/usr/sbin/fsck.ext4": "e2fsck",
            "/usr/sbin/mkfs.vfat": "mkfs.fat", "/usr/sbin/fsck.vfat": "fsck.fat"}
# Library packages each program package must depend on (from DT_NEEDED).
LIBRARIES = {
    "e2fsprogs": {"glibc", "libext2fs", "libcom-err", "libblkid", "libuuid"},
    "fdisk": {"glibc", "libfdisk", "libsmartcols", "libreadline", "libtinfo"},
    "util-linux-partx": {"glibc", "libblkid", "libsmartcols"},
    "dosfstools": {"glibc"},
    "libfdisk": {"libblkid", "libuuid"},
    "python3-yaml": {"python3", "libyaml"},
    "python3-fastjsonschema": {"python3"},
}


def index() -> dict[str, dict[str, object]]:
    doc = json.loads((REPO / "index.json").read_text())
    return {e["name"]: e for e in doc["packages"]}


def files(name: str) -> dict[str, FileEntry]:
    entry = index()[name]
    md = read_metadata(REPO / str(entry["filename"]))
    return {f.path: f for f in md.files}


@pytest.mark.parametrize("name", sorted(FILES))
def test_package_is_in_the_index_with_its_files(name: str) -> None:
    assert name in index(), f"{name} is not in {REPO / 'index.json'}"
    have = files(name)
    missing = [p for p in FILES[name] if p not in have]
    assert not missing, f"{name} lacks {missing}"
    for path, target in SYMLINKS.items():
        if path in have:
            assert have[path].type == "symlink" and have[path].target == target, path


@pytest.mark.parametrize("name", sorted(FILES))
def test_package_is_small(name: str) -> None:
    """Only the named programs and their libraries: no docs, man pages, other tools."""
    have = files(name)
    extra = [p for p in have
             if p.startswith(("/usr/share/", "/usr/lib/systemd/", "/etc/cron.d/"))]
    assert not extra, f"{name} carries {extra}"
    programs = {p for p, f in have.items()
                if f.type != "dir" and p.startswith(("/usr/bin/", "/usr/sbin/"))}
    assert programs == {p for p in FILES[name] if p.startswith(("/usr/bin/", "/usr/sbin/"))}
    assert int(str(index()[name]["installed_size"])) < 4 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(LIBRARIES))
def test_library_dependencies_are_the_library_packages(name: str) -> None:
    raw = index()[name]["dependencies"]
    assert isinstance(raw, list)
    deps = {re.split(r"[<>=! ]", str(d), maxsplit=1)[0] for d in raw}
    assert LIBRARIES[name] <= deps, f"{name} depends on {sorted(deps)}"


def test_mkfs_ext4_is_the_real_mke2fs_and_no_path_is_busyboxs() -> None:
    """Installable next to BusyBox: no program path of these packages is one of
    BusyBox's applet links (mix refuses two owners of one path)."""
    assert files("e2fsprogs")["/usr/sbin/mkfs.ext4"].type == "file"
    applets = {line.strip() for line in (PACKAGES_DIR / "busybox/applets.txt").read_text()
               .splitlines() if line.startswith("/")}
    for name in FILES:
        clash = sorted(set(files(name)) & applets)
        assert not clash, f"{name} and busybox both own {clash}"
