"""What a plan does and in which order: marks carried over, removals that must come first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World

BUSYBOX = shutil.which("busybox")


@pytest.fixture
def w(tmp_path: Path) -> World:
    return World(tmp_path)


def plan_of(w: World, capsys: Any, *args: str) -> list[tuple[str, str]]:
    rc, out, err = w.mix("--simulate", "--json", *args, capsys=capsys)
    assert rc == 0, err
    return [(p["action"], p["name"]) for p in json.loads(out)["plan"]]


def reasons(w: World, capsys: Any) -> dict[str, str]:
    _rc, out, _ = w.mix("--json", "list", capsys=capsys)
    return {p["name"]: p["reason"] for p in json.loads(out)}


def test_a_package_replacing_an_explicit_one_inherits_its_mark(w: World, capsys: Any) -> None:
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.pkg("app", files={"/usr/bin/app": "1"})
    w.sign()
    assert w.mix("install", "a", "app", capsys=capsys)[0] == 0
    w.pkg("b", "2.0", files={"/usr/bin/a": "b"}, replaces=["a"])
    w.pkg("app", "2.0", files={"/usr/bin/app": "2"}, dependencies=["b"])
    w.sign()
    rc, out, err = w.mix("upgrade", capsys=capsys)
    assert rc == 0, err
    assert "install  b 2.0\n" in out  # not "(dependency)": it stands for a, asked for
    assert reasons(w, capsys) == {"app": "explicit", "b": "explicit"}
    rc, _, err = w.mix("remove", "app", capsys=capsys)
    assert rc == 0, err
    assert w.installed() == {"b": "2.0"}
    assert (w.root / "usr/bin/a").read_text() == "b"


def test_a_package_replacing_a_dependency_stays_a_dependency(w: World, capsys: Any) -> None:
    w.pkg("liba", files={"/usr/lib/a": "a"})
    w.pkg("app", files={"/usr/bin/app": "1"}, dependencies=["liba"])
    w.sign()
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    w.pkg("libb", "2.0", files={"/usr/lib/a": "b"}, replaces=["liba"])
    w.pkg("app", "2.0", files={"/usr/bin/app": "2"}, dependencies=["libb"])
    w.sign()
    assert w.mix("upgrade", capsys=capsys)[0] == 0
    assert reasons(w, capsys) == {"app": "explicit", "libb": "dependency"}


def test_removals_of_what_new_packages_conflict_with_or_replace_come_first(
        w: World, capsys: Any) -> None:
    w.pkg("a", files={"/usr/bin/a": "a"})
    w.pkg("libold", files={"/usr/lib/libold": "o"})
    w.pkg("app", files={"/usr/bin/app": "1"}, dependencies=["libold"])
    w.sign()
    assert w.mix("install", "a", "app", capsys=capsys)[0] == 0
    w.pkg("libnew", files={"/usr/lib/libnew": "n"}, conflicts=["libold"])
    w.pkg("app", "2.0", files={"/usr/bin/app": "2"}, dependencies=["libnew"])
    w.sign()
    assert plan_of(w, capsys, "upgrade") == [
        ("remove", "libold"), ("install", "libnew"), ("upgrade", "app")]
    w.pkg("b", "2.0", files={"/usr/bin/a": "b"}, replaces=["a"])
    w.pkg("app2", files={"/usr/bin/app2": "x"}, dependencies=["b"])
    w.sign()
    assert plan_of(w, capsys, "install", "app2") == [
        ("remove", "a"), ("install", "b"), ("install", "app2")]
    _rc, out, _ = w.mix("--simulate", "install", "app2", capsys=capsys)
    assert "remove   a 1.0 (replaced by b)" in out
    _rc, out, _ = w.mix("--simulate", "--json", "install", "app=2.0", capsys=capsys)
    assert json.loads(out)["plan"][0] == {"action": "remove", "name": "libold",
                                          "version": "1.0", "old_version": None,
                                          "reason": "conflicts with libnew"}


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_scripts_run_in_plan_order_with_the_old_package_removed_first(
        w: World, capsys: Any) -> None:
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    log = "#!/bin/sh\necho \"$MIX_SCRIPT $MIX_PACKAGE\" >> /log\n"
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("libold", files={"/usr/lib/libold": "o"}, dependencies=["sh"],
          scripts={"pre-remove": log, "post-remove": log})
    w.pkg("app", files={"/usr/bin/app": "1"}, dependencies=["libold"])
    w.sign()
    assert w.mix("install", "sh")[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    assert w.mix("install", "app")[0] == 0
    w.pkg("libnew", files={"/usr/lib/libnew": "n"}, conflicts=["libold"], dependencies=["sh"],
          scripts={"pre-install": log, "post-install": log})
    w.pkg("app", "2.0", files={"/usr/bin/app": "2"}, dependencies=["libnew"])
    w.sign()
    rc, _, err = w.mix("upgrade", capsys=capsys)
    assert rc == 0, err
    assert (w.root / "log").read_text().split("\n") == [
        "pre-remove libold", "pre-install libnew", "post-remove libold", "post-install libnew",
        ""]


def versions_repo(w: World) -> None:
    w.pkg("pkg", "1.0", files={"/usr/bin/p": "1.0"})
    w.pkg("pkg", "1.1", files={"/usr/bin/p": "1.1"})
    w.pkg("lib", files={"/usr/lib/l": "l"})
    w.pkg("user", files={"/usr/bin/u": "u"}, dependencies=["lib"])
    w.sign()


def test_a_downgrade_is_called_a_downgrade(w: World, capsys: Any) -> None:
    versions_repo(w)
    assert w.mix("install", "pkg", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("--simulate", "--json", "install", "pkg=1.0", capsys=capsys)
    assert json.loads(out)["plan"] == [{"action": "downgrade", "name": "pkg", "version": "1.0",
                                        "old_version": "1.1", "reason": "explicit"}]
    rc, out, err = w.mix("install", "pkg=1.0", capsys=capsys)
    assert rc == 0, err
    assert "downgrade pkg 1.1 -> 1.0" in out and "upgrade  pkg" not in out
    assert "done: 1 downgraded" in out
    assert w.installed() == {"pkg": "1.0"} and (w.root / "usr/bin/p").read_text() == "1.0"


@pytest.mark.parametrize(("spec", "before", "after"), [
    ("pkg<1.1", "1.1", "1.0"), ("pkg<=1.0", "1.1", "1.0"), ("pkg>1.0", "1.0", "1.1"),
    ("pkg>=1.1", "1.0", "1.1"), ("pkg<2", "1.1", "1.1")])
def test_a_version_constraint_on_an_installed_package_changes_it(
        w: World, capsys: Any, spec: str, before: str, after: str) -> None:
    versions_repo(w)
    assert w.mix("install", f"pkg={before}", capsys=capsys)[0] == 0
    rc, out, err = w.mix("install", spec, capsys=capsys)
    assert rc == 0, err
    assert "way out" not in err
    assert w.installed() == {"pkg": after}
    if before == after:
        assert "already installed" in out


def test_orphans_are_labelled_and_removals_download_nothing(w: World, capsys: Any) -> None:
    versions_repo(w)
    assert w.mix("install", "user", capsys=capsys)[0] == 0
    rc, out, _ = w.mix("--simulate", "remove", "user", capsys=capsys)
    assert rc == 0
    assert "remove   user 1.0\n" in out and "remove   lib 1.0 (orphan)" in out
    assert "download" not in out and "2 packages; installed size -2 B" in out
    rc, out, _ = w.mix("--simulate", "--json", "remove", "user", capsys=capsys)
    assert {p["name"]: p["reason"] for p in json.loads(out)["plan"]} == {
        "user": "requested", "lib": "orphan"}


@pytest.mark.skipif(BUSYBOX is None, reason="needs a static busybox")
def test_what_scripts_print_on_success_is_shown(w: World, capsys: Any) -> None:
    bb = Path(BUSYBOX).read_bytes()  # type: ignore[arg-type]
    w.pkg("sh", files={"/bin/busybox": bb, "/bin/sh": "->busybox"})
    w.pkg("db", files={"/etc/db.conf": "x"}, dependencies=["sh"],
          scripts={"pre-install": "#!/bin/sh\necho checking the old data\n",
                   "post-install": "#!/bin/sh\necho 'set a password: db-passwd'\n"
                                   "echo 'and restart' >&2\n"})
    w.sign()
    assert w.mix("install", "sh", capsys=capsys)[0] == 0
    (w.root / "bin/busybox").chmod(0o755)
    rc, out, err = w.mix("install", "db", capsys=capsys)
    assert rc == 0, err
    assert "db pre-install: checking the old data\n" \
           "db post-install: set a password: db-passwd\n" \
           "db post-install: and restart\n" in out
    assert w.mix("remove", "db", capsys=capsys)[0] == 0
    rc, out, err = w.mix("--json", "install", "db", capsys=capsys)
    assert rc == 0 and json.loads(out)["plan"]  # stdout stays JSON; the notice on stderr
    assert "db post-install: set a password: db-passwd" in err
