"""mix fix and install --reinstall: what verify finds broken is installed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mixhelpers import World


@pytest.fixture
def w(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"})
    w.pkg("tool", files={"/usr/bin/tool": "tool", "/etc/tool.conf": "a=1\n"},
          dependencies=["libc"])
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["tool"])
    w.sign()
    return w


def reasons(w: World, capsys: Any) -> dict[str, str]:
    _rc, out, _ = w.mix("--json", "list", capsys=capsys)
    return {p["name"]: p["reason"] for p in json.loads(out)}


def test_fix_reinstalls_the_packages_verify_finds_broken(w: World, capsys: Any) -> None:
    assert w.mix("install", "app", capsys=capsys)[0] == 0
    (w.root / "usr/bin/tool").write_text("damaged")
    (w.root / "usr/lib/libc.so.6").unlink()
    (w.root / "etc/tool.conf").write_text("a=admin\n")
    rc, out, err = w.mix("--json", "verify", capsys=capsys)
    assert rc == 11 and "mix fix libc tool" in err
    assert {"package": "tool", "path": "/usr/bin/tool",
            "problem": "content differs (sha256)"} in json.loads(out)["problems"]
    rc, out, err = w.mix("fix", capsys=capsys)
    assert rc == 0, err
    assert "reinstall libc 1.0" in out and "reinstall tool 1.0" in out and "app" not in out
    assert "done: 2 reinstalled" in out
    assert (w.root / "usr/bin/tool").read_text() == "tool"
    assert (w.root / "usr/lib/libc.so.6").read_text() == "libc"
    assert (w.root / "etc/tool.conf").read_text() == "a=admin\n"  # the admin's, kept
    assert w.mix("verify", capsys=capsys)[0] == 0
    assert reasons(w, capsys) == {"app": "explicit", "tool": "dependency",
                                  "libc": "dependency"}
    rc, out, _ = w.mix("fix", capsys=capsys)
    assert rc == 0 and "nothing to fix" in out


def test_fix_completes_an_interrupted_transaction(w: World, capsys: Any) -> None:
    from mix.database import Database

    assert w.mix("install", "tool", capsys=capsys)[0] == 0
    db = Database(w.root / "var/lib/mix/installed.db")
    with db.transaction() as c:  # what a mix killed while staging leaves
        Database.set_journal(c, "staging", {"txid": "t", "renames": [], "created": [],
                                            "deletes": [], "rmdirs": [], "transfers": []})
    db.close()
    rc, out, err = w.mix("fix", capsys=capsys)
    assert rc == 0 and "rolled back an interrupted transaction" in err
    assert "nothing to fix" in out
    db = Database(w.root / "var/lib/mix/installed.db", readonly=True)
    assert db.journal() is None
    db.close()


def test_install_reinstall(w: World, capsys: Any) -> None:
    assert w.mix("install", "tool", capsys=capsys)[0] == 0
    (w.root / "usr/bin/tool").unlink()
    rc, out, _ = w.mix("install", "tool", capsys=capsys)
    assert rc == 0 and "already installed" in out
    assert not (w.root / "usr/bin/tool").exists()
    rc, out, err = w.mix("install", "--reinstall", "tool", capsys=capsys)
    assert rc == 0, err
    assert "reinstall tool 1.0" in out and (w.root / "usr/bin/tool").read_text() == "tool"
    assert reasons(w, capsys) == {"tool": "explicit", "libc": "dependency"}
    rc, _, err = w.mix("install", "--reinstall", "app", capsys=capsys)
    assert rc == 9 and "app is not installed" in err
    (w.repo / "tool-1.0.noarch.mixpkg").unlink()
    w.pkg("tool", "2.0", files={"/usr/bin/tool": "tool2"}, dependencies=["libc"])
    w.sign()
    rc, _, err = w.mix("install", "--reinstall", "tool", capsys=capsys)
    assert rc == 9 and "cannot reinstall tool 1.0: no repository offers that version" in err
    assert "mix upgrade tool" in err
