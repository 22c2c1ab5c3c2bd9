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
