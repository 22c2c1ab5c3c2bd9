"""Staging rules: path globs, merged /usr, the strip list, and a whole recipe
staged from repository sources (no network)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mixbuild.common import BuildError
from mixbuild.packages.recipe import parse_recipe
from mixbuild.packages.staging import (
    StageInputs,
    make_variables,
    matches,
    merge_usr,
    select,
    stage_files,
    strip_tree,
)


@pytest.mark.parametrize("path, pattern, hit", [
    ("usr/bin/ssh", "usr/bin/*", True),
    ("usr/bin/sub/ssh", "usr/bin/*", True),  # a matched directory selects what is below it
    ("usr/bin/ssh", "usr/*/ssh", True),
    ("usr/lib/x86_64-linux-gnu/libz.so.1", "**/libz.so.1*", True),
    ("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "**/libz.so.1*", True),
    ("usr/lib/libzz.so.1", "**/libz.so.1*", False),
    ("usr/share/doc/x/copyright", "usr/share/doc/**", True),
    ("usr/share/docs", "usr/share/doc/**", False),
    ("etc/rc2.d/S01x", "etc/rc?.d/**", True),
    ("etc/rcS.d/S01x", "etc/rc[0-6].d/**", False),
    ("usr/sbin/sshd", "usr/sbin/ssh", False),
])
def test_globs(path: str, pattern: str, hit: bool) -> None:
    assert matches(path, [pattern]) is hit


def test_select_matches_merged_usr_names() -> None:
    paths = ["lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libz.so.1", "bin/sh"]
    assert select(paths, ["usr/lib/**"], []) == paths[:2]
    assert select(paths, ["**"], ["usr/bin/sh"]) == paths[:2]


def _tree(root: Path, entries: dict[str, str]) -> None:
    """Create files ("text") and symlinks ("->target") under ROOT."""
    for rel, content in entries.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], p)
        else:
            p.write_text(content)


def test_merge_usr_moves_top_level_dirs_and_keeps_links_resolving(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "lib/x86_64-linux-gnu/libfoo.so.1.2": "elf",
        "lib/x86_64-linux-gnu/libfoo.so.1": "->libfoo.so.1.2",
        "lib64/ld.so": "->/lib/x86_64-linux-gnu/libfoo.so.1.2",
        "sbin/tool": "->../usr/lib/helper",
        "usr/lib/helper": "x",
        "bin/sh": "->busybox",
    })
    merge_usr(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usr"]
    lib = tmp_path / "usr/lib/x86_64-linux-gnu"
    assert os.readlink(lib / "libfoo.so.1") == "libfoo.so.1.2"
    assert os.readlink(tmp_path / "usr/lib64/ld.so") == "/lib/x86_64-linux-gnu/libfoo.so.1.2"
    # ../usr/lib/helper from /sbin is ../lib/helper from /usr/sbin
    assert os.readlink(tmp_path / "usr/sbin/tool") == "../lib/helper"
    assert (tmp_path / "usr/sbin/tool").resolve() == (tmp_path / "usr/lib/helper").resolve()
    assert os.readlink(tmp_path / "usr/bin/sh") == "busybox"


def test_merge_usr_refuses_two_files_for_one_path(tmp_path: Path) -> None:
    _tree(tmp_path, {"bin/x": "a", "usr/bin/x": "b"})
    with pytest.raises(BuildError, match="both /bin/x and /usr/bin/x"):
        merge_usr(tmp_path)


def test_merge_usr_keeps_the_top_level_symlinks_themselves(tmp_path: Path) -> None:
    _tree(tmp_path, {"bin": "->usr/bin", "usr/bin/x": "a"})
    merge_usr(tmp_path)
    assert os.readlink(tmp_path / "bin") == "usr/bin"


def test_strip_removes_docs_man_locales_and_prunes_empty_dirs(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "usr/share/doc/pkg/copyright": "c",
        "usr/share/man/man1/x.1.gz": "m",
        "usr/share/locale/de/LC_MESSAGES/x.mo": "l",
        "usr/share/lintian/overrides/x": "o",
        "usr/share/info/x.info.gz": "i",
        "lib/systemd/system/x.service": "s",
        "etc/init.d/x": "init",
        "usr/bin/x": "bin",
        "usr/share/x/data": "d",
        "usr/share/extra/junk": "j",
    })
    (tmp_path / "var/lib/keepme").mkdir(parents=True)
    (tmp_path / "var/cache/empty").mkdir(parents=True)
    removed = strip_tree(tmp_path, extra=["usr/share/extra/**"], keep=["etc/init.d/**"],
                         protected=["/var/lib/keepme"])
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert "usr/share/doc/pkg/copyright" in removed
    assert left == ["etc", "etc/init.d", "etc/init.d/x", "lib", "lib/systemd",
                    "lib/systemd/system", "lib/systemd/system/x.service", "usr", "usr/bin",
                    "usr/bin/x", "usr/share", "usr/share/x", "usr/share/x/data", "var",
                    "var/lib", "var/lib/keepme"]


def test_strip_applies_to_merged_paths(tmp_path: Path) -> None:
    # strip runs after merge_usr in stage_files; /lib/systemd is then usr/lib/systemd
    _tree(tmp_path, {"lib/systemd/system/x.service": "s", "usr/bin/x": "b"})
    merge_usr(tmp_path)
    strip_tree(tmp_path, [], [])
    assert not (tmp_path / "usr/lib/systemd").exists()


def test_stage_files_applies_repository_sources(tmp_path: Path) -> None:
    recipe_dir = tmp_path / "demo"
    _tree(recipe_dir, {"files/etc/demo.conf": "a=1\n", "files/usr/share/doc/demo/README": "r",
                       "links.txt": "# applets\n/usr/bin/one\n/bin/two\n"})
    (recipe_dir / "recipe.toml").write_text('''
name = "demo"
version = "1.0-r1"
description = "d"
license = "MIT"
[[copy]]
src = "files"
to = "/"
[[copy]]
src = "files/etc/demo.conf"
to = "/etc/demo.secret"
mode = "0600"
[[copy]]
src = "{repo}/does/not/exist"
to = "/etc/none"
optional = true
[[file]]
path = "/etc/version"
content = "v={project_version}\\n"
template = true
[[dir]]
path = "/root"
mode = "0700"
[[symlink]]
paths_file = "links.txt"
target = "/usr/bin/demo"
''')
    recipe = parse_recipe(recipe_dir / "recipe.toml")
    files = tmp_path / "stage/files"
    files.mkdir(parents=True)
    stage_files(recipe, StageInputs(), make_variables(), files)
    assert (files / "etc/demo.conf").read_text() == "a=1\n"
    assert stat.S_IMODE((files / "etc/demo.secret").stat().st_mode) == 0o600
    assert (files / "etc/version").read_text().startswith("v=0.")
    assert stat.S_IMODE((files / "root").stat().st_mode) == 0o700
    assert os.readlink(files / "usr/bin/one") == "/usr/bin/demo"
    assert os.readlink(files / "usr/bin/two") == "/usr/bin/demo"  # /bin/two merged into /usr
    assert not (files / "usr/share/doc").exists()
    assert not (files / "etc/none").exists()
    for p in [files, *files.rglob("*")]:
        st = p.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0) or os.geteuid() != 0
        assert int(st.st_mtime) == int(os.environ.get("SOURCE_DATE_EPOCH", "1767225600"))


def test_missing_required_copy_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo/recipe.toml").write_text(
        'name = "demo"\nversion = "1"\ndescription = "d"\nlicense = "MIT"\n'
        '[[copy]]\nsrc = "{artifacts}/kernel/nothing"\nto = "/boot/x"\n')
    recipe = parse_recipe(tmp_path / "demo/recipe.toml")
    with pytest.raises(BuildError, match="does not exist; run 'make kernel'"):
        stage_files(recipe, StageInputs(), make_variables(), tmp_path / "files")


def test_concat_joins_parts_in_path_order_and_removes_them(tmp_path: Path) -> None:
    from mixbuild.packages.staging import concat

    _tree(tmp_path, {"usr/share/ca/b.crt": "B\n", "usr/share/ca/a.crt": "A\n",
                     "usr/share/ca/readme": "no"})
    concat(tmp_path, "/etc/ssl/bundle.crt", ["usr/share/ca/*.crt"], 0o644, True, "test")
    assert (tmp_path / "etc/ssl/bundle.crt").read_text() == "A\nB\n"
    assert sorted(p.name for p in (tmp_path / "usr/share/ca").iterdir()) == ["readme"]
    with pytest.raises(BuildError, match="matches no staged file"):
        concat(tmp_path, "/etc/x", ["nothing/*"], 0o644, True, "test")


def test_repository_files_get_git_modes_whatever_the_umask(tmp_path: Path) -> None:
    recipe_dir = tmp_path / "demo"
    _tree(recipe_dir, {"files/usr/bin/tool": "#!/bin/sh\n", "files/etc/conf": "x\n"})
    (recipe_dir / "files/usr/bin/tool").chmod(0o775)
    (recipe_dir / "files/etc/conf").chmod(0o600)
    (recipe_dir / "recipe.toml").write_text('name = "demo"\nversion = "1"\ndescription = "d"\n'
                                            'license = "MIT"\n[[copy]]\nsrc = "files"\nto = "/"\n')
    files = tmp_path / "stage"
    files.mkdir()
    old = os.umask(0o002)
    try:
        stage_files(parse_recipe(recipe_dir / "recipe.toml"), StageInputs(), make_variables(),
                    files)
    finally:
        os.umask(old)
    assert stat.S_IMODE((files / "usr/bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((files / "etc/conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((files / "usr/bin").stat().st_mode) == 0o755
