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


def build(w: World, repo: Path, root: Path) -> bytes:
    root.mkdir(parents=True)
    assert main(["--root", str(root), "--repo", f"file://{repo}", "--keys-dir",
                 str(w.keys_dir), "-y", "install", "app"]) == 0
    assert main(["--root", str(root), "-y", "mark", "--explicit", "libc"]) == 0
    return (root / "var/lib/mix/installed.db").read_bytes()


def test_two_checkouts_give_the_same_database(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    (tmp_path / "a").mkdir()
    w = World(tmp_path / "a")
    w.pkg("libc", files={"/usr/lib/libc.so.6": "libc"})
    w.pkg("app", files={"/usr/bin/app": "app"}, dependencies=["libc"])
    w.sign(created=EPOCH, valid_days=36500)
    other = tmp_path / "another-checkout-of-the-same-commit" / "artifacts"
    shutil.copytree(w.repo, other / "repo")
    first = build(w, w.repo, tmp_path / "a/artifacts/rootfs")
    second = build(w, other / "repo", other / "rootfs")
    assert first == second
    for host in (str(tmp_path).encode(), b"/artifacts", b".mixtmp-"):
        assert host not in first
