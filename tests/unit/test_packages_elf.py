"""ELF facts of real binaries -> `so` provides and automatic package dependencies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixbuild.common import BuildError
from mixbuild.packages.elf import read_elf, scan_tree
from mixbuild.packages.recipe import Recipe
from mixbuild.packages.repo import (
    Staged,
    auto_dependencies,
    check_sonames,
    linkage_json,
    soname_providers,
)

LS = Path("/usr/bin/ls")
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")
LIBSELINUX = Path("/lib/x86_64-linux-gnu/libselinux.so.1")
pytestmark = pytest.mark.skipif(not (LS.exists() and LIBC.exists() and LIBSELINUX.exists()),
                                reason="needs a Debian x86_64 host")


def test_reads_needed_soname_and_interpreter_of_real_files() -> None:
    ls = read_elf(LS, "/usr/bin/ls")
    assert ls is not None
    assert "libc.so.6" in ls.needed and "libselinux.so.1" in ls.needed
    assert ls.soname is None
    assert ls.interpreter == "/lib64/ld-linux-x86-64.so.2"
    libc = read_elf(LIBC, "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert libc is not None and libc.soname == "libc.so.6"
    assert libc.needed == ("ld-linux-x86-64.so.2",)


def test_non_elf_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "link").symlink_to(LS)
    assert read_elf(tmp_path / "script", "/script") is None
    assert read_elf(tmp_path / "link", "/link") is None


def _package(tmp_path: Path, name: str, files: dict[str, Path]) -> Staged:
    root = tmp_path / name
    for inside, src in files.items():
        dest = root / inside.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    recipe = Recipe(name=name, description="d", license="MIT", directory=tmp_path, version="1")
    return Staged(recipe, "key", linkage_json(scan_tree(root)), "1")


def test_needed_sonames_become_dependencies_on_the_providing_packages(tmp_path: Path) -> None:
    coreutils = _package(tmp_path, "coreutils", {"/usr/bin/ls": LS})
    libc = _package(tmp_path, "glibc", {"/usr/lib/x86_64-linux-gnu/libc.so.6": LIBC})
    selinux = _package(tmp_path, "libselinux",
                       {"/usr/lib/x86_64-linux-gnu/libselinux.so.1": LIBSELINUX})
    assert libc.linkage["provides"] == ["libc.so.6"]
    # libc carries its own needs except the loader, which this test package lacks
    assert list(libc.linkage["needs"]) == ["ld-linux-x86-64.so.2"]
    providers = soname_providers({s.recipe.name: s for s in (coreutils, libc, selinux)})
    assert providers == {"libc.so.6": "glibc", "libselinux.so.1": "libselinux"}
    assert auto_dependencies(coreutils, providers) == ["glibc", "libselinux"]
    with pytest.raises(BuildError, match=r"libpcre2-8.so.0 \(needed by libselinux: "
                                         r"/usr/lib/x86_64-linux-gnu/libselinux.so.1\)"):
        check_sonames([coreutils, selinux], providers)


def test_a_library_carried_in_the_same_package_is_no_dependency(tmp_path: Path) -> None:
    bundle = _package(tmp_path, "bundle", {"/usr/bin/ls": LS,
                                           "/usr/lib/x86_64-linux-gnu/libselinux.so.1": LIBSELINUX})
    assert "libselinux.so.1" not in bundle.linkage["needs"]
    assert bundle.linkage["needs"]["libc.so.6"] == ["/usr/bin/ls",
                                                    "/usr/lib/x86_64-linux-gnu/libselinux.so.1"]


def test_two_packages_shipping_one_soname_is_an_error(tmp_path: Path) -> None:
    a = _package(tmp_path, "a", {"/usr/lib/libc.so.6": LIBC})
    b = _package(tmp_path, "b", {"/usr/lib/x86_64-linux-gnu/libc.so.6": LIBC})
    with pytest.raises(BuildError, match="both a and b ship the shared library libc.so.6"):
        soname_providers({"a": a, "b": b})
