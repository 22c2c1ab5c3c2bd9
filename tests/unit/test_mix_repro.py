"""mix's part in reproducible images: two builds of one root from the same packages, in
two checkouts (different host paths), give the same installed.db, byte for byte, with
no host path in it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mixhelpers import World

from mix.cli import main

EPOCH = 1767225600


def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A signed repository of app and the libc it needs, dated EPOCH."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    (tmp_path / "a").mkdir()
    w = World(tmp_path / "a")
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"})
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["libc"])
    w.sign(created=EPOCH, valid_days=36500)
    return w


def build(w: World, repo: Path, root: Path) -> bytes:
    root.mkdir(parents=True)
    assert main(["--root", str(root), "--repo", f"file://{repo}", "--keys-dir",
                 str(w.keys_dir), "-y", "install", "app"]) == 0
    assert main(["--root", str(root), "-y", "mark", "--explicit", "libc"]) == 0
    return (root / "var/lib/mix/installed.db").read_bytes()


def test_two_checkouts_give_the_same_database(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(tmp_path, monkeypatch)
    other = tmp_path / "another-checkout-of-the-same-commit" / "artifacts"
    shutil.copytree(w.repo, other / "repo")
    first = build(w, w.repo, tmp_path / "a/artifacts/rootfs")
    second = build(w, other / "repo", other / "rootfs")
    assert first == second
    for host in (str(tmp_path).encode(), b"/artifacts", b".mixtmp-"):
        assert host not in first


def test_compacted_database_keeps_no_trace_of_its_free_pages(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The image build's compaction: the same rows give the same file whatever pages the
    install freed on the way (a real build's journal frees pages in path-dependent
    places), and mix still reads it."""
    import sqlite3

    from mixbuild.images.rootfs import compact_database

    w = world(tmp_path, monkeypatch)
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        build(w, w.repo, root)
    churned = roots[1] / "var/lib/mix/installed.db"
    con = sqlite3.connect(churned)
    # Rows grown across many pages then shrunk back: the same rows, pages freed.
    con.execute("UPDATE packages SET repo = repo || ?", ("x" * 60000,))
    con.commit()
    con.execute("UPDATE packages SET repo = substr(repo, 1, length(repo) - 60000)")
    con.commit()
    con.close()
    dbs = [r / "var/lib/mix/installed.db" for r in roots]
    assert dbs[0].read_bytes() != dbs[1].read_bytes()
    for root in roots:
        compact_database(root)
    assert dbs[0].read_bytes() == dbs[1].read_bytes()
    assert main(["--root", str(roots[1]), "verify"]) == 0
